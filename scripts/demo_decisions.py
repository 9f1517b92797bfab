"""`make demo`'s game-server stand-in: asks the running decision service for a few players' offers.

    python scripts/demo_decisions.py --url http://127.0.0.1:8089 --sample 5 --user new-player-0001 [--set …]

Takes --sample N player ids from the online store (what export_features wrote) plus every
--user, POSTs one /v1/decisions each over HTTP (the standard library's client, as any game
server would call it), prints the answers as a table, and the JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from offer_ai.config import load_settings
from offer_ai.online.reader import OnlineFeatureReader


def decide(url: str, user_id: str, session_id: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/v1/decisions", data=json.dumps({"user_id": user_id, "session_id": session_id}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def table(rows: list[dict[str, Any]]) -> str:
    header = ("user_id", "features as of", "country", "offer", "propensity", "store", "decision_id")
    lines = [header] + [(
        r["user_id"], r["features_as_of"] or "cold start", str(r["features"].get("country") or "-"),
        f"{r['offer_type']} {r['offer_price']:.2f}" + (" *" if r["explored"] else ""), f"{r['propensity']:.4f}",
        r["store"], r["decision_id"][:12]) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sample", type=int, default=5)
    parser.add_argument("--user", action="append", default=[])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    settings = load_settings(None, args.overrides)
    with OnlineFeatureReader(settings.online_store) as reader:
        users = reader.sample_user_ids(args.sample) + args.user
    try:
        rows = [{"user_id": u, **decide(args.url, u, f"demo-session-{i}")} for i, u in enumerate(users)]
    except urllib.error.URLError as exc:
        print(f"demo_decisions: error: the service at {args.url} did not answer: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    print(json.dumps({"users": len(rows), "cold_starts": sum(r["cold_start"] for r in rows),
                      "explored": sum(r["explored"] for r in rows), "model_version": rows[0]["model_version"] if rows else None,
                      "url": args.url, "decisions": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
