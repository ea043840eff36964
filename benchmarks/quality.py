"""Recommendation quality on real data: semrec vs popularity, ItemKNN and ALS, in one run.

    python benchmarks/quality.py /work/shared/data/ml-latest-small            # leave-last-out
    python benchmarks/quality.py /work/shared/data/ml-latest-small --protocol temporal
    python benchmarks/quality.py DATA --no-tune      # defaults only (no validation grids)
    python benchmarks/quality.py DATA --no-tune --no-baselines   # quickest: semrec's rows only

Writes benchmarks/out/quality-<dataset>-<protocol>.{json,md}; item texts are encoded once and
cached under benchmarks/out/cache (keyed by model fingerprint and text hash). `--raw FILE` also
writes the report with the git commit and the machine beside RESULTS.md (the leave-last-out
`--no-tune` run is benchmarks/quality.json, rendered into RESULTS.md by benchmarks/tables.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from semrec.evaluation import markdown, run_benchmark

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from crash import machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="MovieLens folder (movies.csv, ratings.csv, tags.csv)")
    parser.add_argument("--protocol", choices=["leave-last-out", "temporal"], default="leave-last-out")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--include-seen", action="store_true", help="rank items already in the user's history too")
    parser.add_argument("--no-tune", action="store_true", help="skip the validation grids")
    parser.add_argument("--no-online", action="store_true", help="skip the Recommender-on-Qdrant-Edge row")
    parser.add_argument("--no-baselines", action="store_true", help="skip popularity, ItemKNN and ALS")
    parser.add_argument("--model", default=None, help="sentence-transformers model (default: packaged MiniLM)")
    parser.add_argument("--backend", default="torch", help="encoder backend: torch (fp32 reference) or auto")
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--raw", default=None, help="also write the report, with the commit and machine, to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    report = run_benchmark(
        args.data,
        protocol=args.protocol,
        k=args.k,
        exclude_seen=not args.include_seen,
        tune=not args.no_tune,
        online=not args.no_online,
        baselines=not args.no_baselines,
        model=args.model,
        backend=args.backend,
        out_dir=args.out,
        cache_dir=f"{args.out}/cache",
        seed=args.seed,
    )
    print(markdown(report))
    if args.raw:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
        Path(args.raw).write_text(json.dumps({"commit": commit, "machine": machine(), **report}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
