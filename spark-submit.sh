#!/usr/bin/env bash
# spark-submit with what every offer-ai job needs: Delta and the S3A connector (jars installed in
# the venv's Spark by `make venv`, else --packages), Delta's SQL extension, UTC, the offer_ai
# package shipped as a zip (--py-files) so the same command works on --master yarn or
# k8s://..., and for a driver on this machine (local[*], or a cluster on 127.0.0.1 such as
# `make cluster-start`'s) a driver bound to 127.0.0.1 that maps the class-data-sharing archive
# (scripts/spark_runtime.py).
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py [job options]
# OFFER_AI_CDS=off runs without the archive; dump:<file> writes one at exit (spark_runtime.py).
# OFFER_AI_JIT=quick (C1 only) for short jobs on small data, peak (default) for long or big ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${OFFER_AI_VENV:-$here/.venv}"
# = offer_ai.spark.SPARK_PACKAGES and PACKAGE_EXCLUDES (tests/test_cluster_config.py checks it)
PACKAGES=(io.delta:delta-spark_4.2_2.13:4.4.0 org.apache.hadoop:hadoop-aws:3.5.0
          software.amazon.awssdk:s3:2.35.4 software.amazon.awssdk:s3-transfer-manager:2.35.4)
EXCLUDES="software.amazon.awssdk:bundle"

spark_home=""
if [[ -x "$venv/bin/spark-submit" ]]; then
  submit="$venv/bin/spark-submit"
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$venv/bin/python}"
  for candidate in "$venv"/lib/python3*/site-packages/pyspark; do spark_home="$candidate"; done
elif command -v spark-submit >/dev/null 2>&1; then
  submit="$(command -v spark-submit)"
else
  echo "spark-submit.sh: no spark-submit found: run 'make venv' first (or put Spark's bin/ on PATH)." >&2
  exit 2
fi

# Split spark-submit's own options from the application and its arguments.
spark_opts=()
py_files=""
master=""
while [[ $# -gt 0 && "$1" == -* ]]; do
  case "$1" in
    --py-files) py_files="$2"; shift 2 ;;
    --py-files=*) py_files="${1#--py-files=}"; shift ;;
    --master) master="$2"; spark_opts+=("$1" "$2"); shift 2 ;;
    --master=*) master="${1#--master=}"; spark_opts+=("$1"); shift ;;
    --help|-h|--version|--verbose|-v|--supervise) spark_opts+=("$1"); shift ;;
    *) spark_opts+=("$1" "$2"); shift 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "usage: ./spark-submit.sh [spark-submit options] jobs/<job>.py [job options]" >&2
  exit 2
fi

# The package zip, named by its content and written atomically: what runs is what is in lib/
# now, and a job started meanwhile never reads a half-written zip (nor one rewritten under it).
build="$here/.offer_ai_build"
mkdir -p "$build"
zip="$("${PYSPARK_PYTHON:-python3}" - "$here/lib" "$build" <<'PY'
import hashlib, os, pathlib, sys, tempfile, time, zipfile
lib, build = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
sources = sorted(lib.rglob("*.py"))
digest = hashlib.sha256()
for path in sources:
    digest.update(path.relative_to(lib).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
out = build / f"offer_ai-{digest.hexdigest()[:16]}.zip"
if not out.exists():
    fd, tmp = tempfile.mkstemp(dir=build, suffix=".zip.tmp")
    with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sources:
            zf.write(path, path.relative_to(lib).as_posix())
    os.replace(tmp, out)
os.utime(out)
week = time.time() - 7 * 86400  # zips a job may still be running from stay a week
for old in build.glob("offer_ai-*.zip"):
    if old != out and old.stat().st_mtime < week:
        old.unlink(missing_ok=True)
print(out)
PY
)"
py_files="$zip${py_files:+,$py_files}"
# The zipped package cannot find conf/ beside itself: tell it where the default config lives.
export OFFER_AI_CONF_DIR="${OFFER_AI_CONF_DIR:-$here/conf}"

# Delta and S3A: the jars make venv installed, or Ivy resolves the missing packages on start.
marker="$spark_home/jars/offer-ai-packages.txt"
missing=()
for package in "${PACKAGES[@]}"; do
  if [[ -z "$spark_home" || ! -f "$marker" ]] || ! grep -qxF "$package" "$marker"; then missing+=("$package"); fi
done
packages=()
if [[ ${#missing[@]} -gt 0 ]]; then
  packages=(--packages "$(IFS=,; echo "${missing[*]}")" --exclude-packages "$EXCLUDES")
else
  # Spark's own conf/ would put a stale spark-defaults.conf (and its packages) back; the jobs
  # take their settings from conf/*.yaml. An empty folder also keeps the classpath archivable.
  if [[ -z "${SPARK_CONF_DIR:-}" ]]; then
    export SPARK_CONF_DIR="$build/spark-conf"
    mkdir -p "$SPARK_CONF_DIR"
  fi
fi

local_opts=()
loopback_cluster='^spark://(127\.0\.0\.1|localhost)(:[0-9]+)?$'
if [[ -z "$master" || "$master" == local* || "$master" =~ $loopback_cluster ]]; then
  # The driver runs here; on a cluster of this machine its executors must reach it on 127.0.0.1.
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
  local_opts=(--conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1
              --conf spark.ui.showConsoleProgress=false)
  if [[ -z "$master" || "$master" == local* ]]; then local_opts+=(--conf spark.ui.enabled=false); fi
  # = offer_ai.spark.driver_java_options (tests/test_driver_jvm.py checks it): the parallel
  # collector, which spends less CPU than G1 on a few cores, and with OFFER_AI_JIT=quick the
  # C1 compiler only, for short jobs on small data (bench/README.md has the figures).
  jvm="-XX:+UseParallelGC"
  case "${OFFER_AI_JIT:-peak}" in
    quick) jvm="$jvm -XX:TieredStopAtLevel=1" ;;
    peak) ;;
    *) echo "spark-submit.sh: OFFER_AI_JIT must be 'quick' or 'peak' (got '${OFFER_AI_JIT}')." >&2; exit 2 ;;
  esac
  archive="$spark_home/offer-ai-cds/classes.jsa"
  cds="${OFFER_AI_CDS:-auto}"
  if [[ "$cds" == dump:* ]]; then
    jvm="$jvm -XX:ArchiveClassesAtExit=${cds#dump:} -Xlog:cds=off -Xlog:cds+dynamic=off"
  elif [[ "$cds" != off && ${#packages[@]} -eq 0 && -f "$archive" ]]; then
    jvm="$jvm -XX:SharedArchiveFile=$archive -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"
  fi
  local_opts+=(--conf "spark.driver.extraJavaOptions=$jvm")
fi

exec "$submit" \
  ${packages[@]+"${packages[@]}"} \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  ${local_opts[@]+"${local_opts[@]}"} \
  ${spark_opts[@]+"${spark_opts[@]}"} \
  --py-files "$py_files" \
  "$@"
