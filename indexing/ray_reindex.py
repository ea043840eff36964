"""Distributed re-index on Ray: `python -m indexing.ray_reindex SHARDS --url http://host:6333`.

Reads Parquet shards with Ray Data, encodes them on an actor pool (GPU actors when the cluster
has GPUs), writes a new version to the Qdrant server and switches the aliases. Prints a JSON
summary last. Exit codes: 0 success, 1 failure, 2 usage error, 3 partial (rows rejected).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m indexing.ray_reindex", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="Parquet file or folder of Parquet shards")
    p.add_argument("--url", required=True, help="Qdrant server URL")
    p.add_argument("--address", help="Ray cluster address (default: start a local one)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray cluster")
    p.add_argument("--actors", type=int, default=1, help="encoder actors")
    p.add_argument("--batch-size", type=int, help="items per batch (default: the job's)")
    p.add_argument("--model", help="sentence-transformers name or folder")
    p.add_argument("--prefix", default="semrec")
    p.add_argument("--rejects", help="rejects file (JSONL)")
    p.add_argument("--streams", type=int, help="parallel upload streams (default: UploadConfig's)")
    p.add_argument("--retries", type=int, help="retries for transient errors (default: UploadConfig's)")
    p.add_argument("--timeout", type=float, help="request timeout in seconds (default: UploadConfig's)")
    args = p.parse_args(argv)

    from semrec.errors import SemrecError, require
    from semrec.reindex import UploadConfig, ray_reindex
    from semrec.settings import Settings

    try:
        ray = require("ray", "distributed")
        ray.init(address=args.address, num_cpus=args.num_cpus) if args.address or args.num_cpus else ray.init()
        summary = ray_reindex(
            args.source, args.url, model=args.model, actors=args.actors, batch_size=args.batch_size,
            prefix=args.prefix, api_key=Settings().api_key, rejects_path=args.rejects,
            upload=UploadConfig.given(streams=args.streams, retries=args.retries, timeout_s=args.timeout),
        )
    except Exception as exc:  # noqa: BLE001 - every exit ends with a JSON line
        message = " ".join(str(exc).split())
        if not isinstance(exc, SemrecError):
            message = f"{type(exc).__name__}: {message}"
        print(f"error: {message}", file=sys.stderr)
        print(json.dumps({"error": message, "exit_code": 1}, ensure_ascii=False))
        return 1
    print(summary.to_json())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
