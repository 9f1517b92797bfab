"""Buckets and uploads on the local S3 stand-in (the moto server of `make dynamodb-start`).

Why: S3A reads and writes objects but never creates a bucket, and jobs/generate_events.py
writes to a local folder; on AWS `aws s3 mb` / `aws s3 cp --recursive` do this, here the AWS
CLI is not installed. Refuses any endpoint that is not on this machine, so it never writes
to a real account.

    python scripts/local_s3.py mb s3://offer-ai-lake [--config conf/local-cluster.yaml]
    python scripts/local_s3.py put demo-output/raw s3://offer-ai-raw/events [--config ...]

The endpoint is the config's storage.s3_endpoint (override with --set storage.s3_endpoint=...).
`put` creates the bucket if needed and uploads every file under the folder, keeping its
relative path (date=YYYY-MM-DD/part-*.jsonl), as `aws s3 cp --recursive` would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from offer_ai.config import load_settings  # noqa: E402
from offer_ai.errors import UserError  # noqa: E402
from offer_ai.spark import is_loopback  # noqa: E402


def client(endpoint: str | None, region: str) -> Any:
    """An S3 client for a loopback endpoint, with the dummy keys a local stand-in accepts."""
    import boto3

    if not is_loopback(endpoint):
        raise UserError(f"storage.s3_endpoint is {endpoint or 'AWS'}: this helper only writes to a local S3 on "
                        "127.0.0.1 (use the AWS CLI for real buckets).")
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                          aws_access_key_id="local", aws_secret_access_key="local")


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
        raise UserError(f"{uri} is not an s3:// or s3a:// location.")
    return parsed.netloc, parsed.path.strip("/")


def make_bucket(s3: Any, bucket: str) -> bool:
    """Create `bucket` unless it exists; True when it was created."""
    if bucket in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        return False
    s3.create_bucket(Bucket=bucket)
    return True


def put(s3: Any, folder: Path, uri: str) -> int:
    """Upload every file under `folder` to `uri`, keeping relative paths; the number of files."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.")
    bucket, prefix = split(uri)
    make_bucket(s3, bucket)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        key = "/".join(part for part in (prefix, path.relative_to(folder).as_posix()) if part)
        s3.upload_file(str(path), bucket, key)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/local_s3.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("mb", "put"))
    parser.add_argument("args", nargs="+", metavar="ARG", help="mb: s3://bucket ...;  put: FOLDER s3://bucket/prefix")
    parser.add_argument("--config", default=str(REPO / "conf" / "local-cluster.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        storage = load_settings(args.config, args.overrides).storage
        s3 = client(storage.s3_endpoint, storage.s3_region or "us-east-1")
        if args.command == "mb":
            for uri in args.args:
                bucket, _ = split(uri)
                print(f"{'created' if make_bucket(s3, bucket) else 'exists'}: s3://{bucket}")
        else:
            if len(args.args) != 2:
                raise UserError("put takes a folder and an s3:// location.")
            count = put(s3, Path(args.args[0]), args.args[1])
            print(f"uploaded {count} files to {args.args[1]}")
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
