#!/usr/bin/env bash
# spark-submit with what every offer-ai job needs: the Delta packages and SQL extension, UTC,
# the offer_ai package shipped as a zip (--py-files) so the same command works on
# --master yarn or k8s://..., and in local mode a driver bound to 127.0.0.1.
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py [job options]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${OFFER_AI_VENV:-$here/.venv}"
DELTA_PACKAGE="io.delta:delta-spark_4.2_2.13:4.4.0"

if [[ -x "$venv/bin/spark-submit" ]]; then
  submit="$venv/bin/spark-submit"
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$venv/bin/python}"
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

# The package zip is rebuilt on every call, so what runs is what is in lib/ now.
build="$here/.offer_ai_build"
mkdir -p "$build"
zip="$build/offer_ai.zip"
"${PYSPARK_PYTHON:-python3}" - "$here/lib" "$zip" <<'PY'
import pathlib, sys, zipfile
lib, out = pathlib.Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted(lib.rglob("*.py")):
        zf.write(path, path.relative_to(lib).as_posix())
PY
py_files="$zip${py_files:+,$py_files}"
# The zipped package cannot find conf/ beside itself: tell it where the default config lives.
export OFFER_AI_CONF_DIR="${OFFER_AI_CONF_DIR:-$here/conf}"

local_opts=()
if [[ -z "$master" || "$master" == local* ]]; then
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
  local_opts=(--conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1
              --conf spark.ui.enabled=false --conf spark.ui.showConsoleProgress=false)
fi

exec "$submit" \
  --packages "$DELTA_PACKAGE" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  ${local_opts[@]+"${local_opts[@]}"} \
  ${spark_opts[@]+"${spark_opts[@]}"} \
  --py-files "$py_files" \
  "$@"
