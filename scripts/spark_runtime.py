"""Make the venv's Spark start fast: its extra jars installed once, and a class-data-sharing archive.

Why: every job used to resolve the Delta packages with Ivy on start (`--packages`, ~1-2 s and
33 jars, most of them duplicates that Spark's own jars shadow), and to load ~20,000 classes
from jars. The S3A connector for s3a:// lakes (hadoop-aws and the AWS SDK v2 modules it calls,
offer_ai.spark.S3A_PACKAGES) is installed the same way: one resolution of ~18 MB, once, in
~20 s; ~11 MB of it lands in pyspark/jars, the rest are jars Spark already ships. Measured on 2 cores: the trivial job `spark.range(10).count()` through
spark-submit took ~11 s with --packages, ~8.5 s with the jars in place, ~5.5 s with the
archive too.

    python scripts/spark_runtime.py jars   # resolve the packages (Maven Central, Ivy cache) and
                                           # copy the jars Spark lacks into pyspark/jars/
    python scripts/spark_runtime.py cds    # run a small Delta pipeline once and archive the
                                           # classes it loads (JDK class-data sharing)
    python scripts/spark_runtime.py status

Both are idempotent and run by `make venv`. Nothing depends on them for correctness: without
the jars, spark-submit.sh and the session builder fall back to `--packages`; without a valid
archive (another JDK, other jars) the JVM simply starts without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from offer_ai.spark import (  # noqa: E402
    CDS_DIR, PACKAGE_EXCLUDES, SPARK_PACKAGES, cds_archive, installed_packages, spark_home,
)

#: Written beside the jars it installed: which packages are in place (read by spark-submit.sh).
MARKER = "offer-ai-packages.txt"
_IVY_NAME = re.compile(r"^(?P<org>[^_]+)_(?P<artifact>.+?)-(?P<version>\d[\w.]*(-[\w.]+)?)\.jar$")
_SPARK_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[\w.]*(-[\w.]+)?)\.jar$")


def _artifact(name: str, pattern: re.Pattern[str]) -> str | None:
    m = pattern.match(name)
    return m.group("artifact") if m else None


def install_jars(force: bool = False) -> list[str]:
    """Resolve SPARK_PACKAGES through spark-submit (Spark's own Ivy, Maven Central), then copy
    every resolved jar whose artifact Spark does not already ship into pyspark/jars/.

    Duplicates of Spark's own artifacts (jackson, hadoop, parquet, log4j, ...) are skipped:
    on the classpath they were shadowed by Spark's versions anyway.
    """
    jars_dir = spark_home() / "jars"
    marker = jars_dir / MARKER
    if not force and installed_packages() == set(SPARK_PACKAGES):
        print(f"spark jars: {', '.join(SPARK_PACKAGES)} already installed in {jars_dir}")
        return []
    if marker.is_file():  # a previous install: take its jars out first, then resolve afresh
        for line in marker.read_text().splitlines():
            if line.startswith("jar "):
                (jars_dir / line[4:]).unlink(missing_ok=True)
        marker.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "resolve.py"
        probe.write_text(
            "from pyspark import SparkConf, SparkContext\n"
            "SparkContext._ensure_initialized()\n"
            "print('JARS=' + SparkConf().get('spark.jars', ''))\n"
        )
        env = {**os.environ, "SPARK_CONF_DIR": tmp, "PYSPARK_PYTHON": sys.executable}
        done = subprocess.run(
            [str(Path(sys.executable).parent / "spark-submit"), "--packages", ",".join(SPARK_PACKAGES),
             "--exclude-packages", ",".join(PACKAGE_EXCLUDES), str(probe)],
            capture_output=True, text=True, env=env,
        )
    resolved = [line[5:] for line in done.stdout.splitlines() if line.startswith("JARS=")]
    if done.returncode != 0 or not resolved:
        sys.exit(f"spark jars: resolving {', '.join(SPARK_PACKAGES)} failed (Maven Central reachable?):\n"
                 + done.stderr[-2000:])
    ours = {_artifact(p.name, _SPARK_NAME) for p in jars_dir.glob("*.jar")}
    copied: list[str] = []
    for uri in resolved[0].split(","):
        source = Path(uri.removeprefix("file://").removeprefix("file:"))
        artifact = _artifact(source.name, _IVY_NAME)
        if artifact is None or artifact in ours:
            continue
        target = jars_dir / source.name.split("_", 1)[1]  # Spark's naming: artifact-version.jar
        shutil.copyfile(source, target)
        copied.append(target.name)
    # packages first (spark-submit.sh greps for the exact lines), then the files this install owns
    marker.write_text("".join(f"{p}\n" for p in SPARK_PACKAGES) + "".join(f"jar {name}\n" for name in copied))
    # Another classpath: the archive no longer matches it (the JVM would ignore it); cds rebuilds it.
    for stale in cds_archive().parent.glob("*.jsa"):
        stale.unlink()
    print(f"spark jars: installed {len(copied)} jars for {', '.join(SPARK_PACKAGES)} into {jars_dir}")
    return copied


def build_cds(force: bool = False) -> Path | None:
    """Run sessionize and build_features once on a tiny generated lake, through spark-submit.sh,
    with -XX:ArchiveClassesAtExit, so the archive holds the classes real jobs load (Spark, Delta,
    Catalyst, codegen), keyed by the JDK and the jars (offer_ai.spark.cds_archive)."""
    archive = cds_archive()
    if archive.exists() and not force:
        print(f"spark cds: {archive} is up to date")
        return archive
    if installed_packages() != set(SPARK_PACKAGES):
        print("spark cds: skipped (install the jars first: spark_runtime.py jars)")
        return None
    archive.parent.mkdir(parents=True, exist_ok=True)
    for stale in archive.parent.glob("*.jsa"):
        stale.unlink()
    partial = archive.with_suffix(".tmp")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        python = sys.executable
        subprocess.run([python, "jobs/generate_events.py", "--out", str(work / "raw"), "--users", "20", "--days", "3",
                        "--malformed", "0.01", "--duplicates", "0.01"], cwd=REPO, check=True, capture_output=True)
        script = work / "warmup.py"
        script.write_text(_WARMUP.format(repo=str(REPO), raw=str(work / "raw"), lake=str(work / "lake")))
        env = {**os.environ, "OFFER_AI_CDS": f"dump:{partial}"}
        started = dt.datetime.now()
        done = subprocess.run([str(REPO / "spark-submit.sh"), str(script)], cwd=REPO, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0 or not partial.exists():
            print(f"spark cds: the warm-up run failed; jobs start without an archive:\n{done.stderr[-2000:]}")
            partial.unlink(missing_ok=True)
            return None
    partial.rename(archive)
    seconds = (dt.datetime.now() - started).total_seconds()
    print(f"spark cds: archived {archive.stat().st_size / 2**20:.0f} MiB of classes in {seconds:.0f} s -> {archive}")
    return archive


#: Runs inside spark-submit.sh: the jobs' own code, in one JVM, on a throwaway lake.
_WARMUP = '''
import importlib.util, sys
sys.path.insert(0, "{repo}/lib")
from offer_ai.cli import settings_from_args

def job(name):
    spec = importlib.util.spec_from_file_location(name, "{repo}/jobs/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

for name, argv in (("sessionize", ["--input", "{raw}", "--lake", "{lake}"]),
                   ("sessionize", ["--input", "{raw}", "--lake", "{lake}"]),  # the incremental path
                   ("build_features", ["--lake", "{lake}", "--run-id", "warmup"])):
    module = job(name)
    args = module.build_parser().parse_args(argv)
    module.main(args, settings_from_args(args))
'''


def status() -> dict[str, object]:
    archive = cds_archive()
    return {"spark_home": str(spark_home()), "packages": sorted(installed_packages()),
            "wanted": list(SPARK_PACKAGES), "cds_archive": str(archive), "cds_ready": archive.exists(),
            "cds_dir": str(CDS_DIR)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("jars", "cds", "status"))
    parser.add_argument("--force", action="store_true", help="redo it even when it looks done")
    args = parser.parse_args()
    if args.what == "jars":
        install_jars(args.force)
    elif args.what == "cds":
        build_cds(args.force)
    else:
        print(json.dumps(status(), indent=2))


if __name__ == "__main__":
    main()
