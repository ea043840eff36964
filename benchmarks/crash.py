"""Crash trials of the write path: a child process recording events (`record`, `record_many`),
erasing users (`forget_user`) or fitting (`fit_collaborative`) on the embedded store is killed
with SIGKILL at a random moment, the store is reopened (which repairs interrupted writes) and
checked: acknowledged events present, acknowledged erasures gone, the write in flight whole or
not at all, no duplicates, no zero vectors, popularity = users who have seen each item.

    .venv/bin/python benchmarks/crash.py [--trials 20] [--ops record record_many forget fit]

Writes benchmarks/crash.json (raw results, git commit, CPU) and prints the RESULTS.md table.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from write_child import check_after_crash, crash_trial  # noqa: E402

sys.path.insert(0, str(HERE))
from tables import crash as crash_table  # noqa: E402

from semrec import Recommender, load_encoder  # noqa: E402
from semrec.demo import sample_catalog  # noqa: E402


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), platform.processor())
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"]
    return {"cpu": model, "flags": [f for f in wanted if f" {f}" in flags], "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--ops", nargs="+", default=["record", "record_many", "forget", "fit"])
    parser.add_argument("--out", type=Path, default=HERE / "crash.json")
    args = parser.parse_args()
    encoder = load_encoder(backend="torch")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        with Recommender.open(base, encoder=encoder) as rec:
            rec.index_items(sample_catalog())
            rec.record("u0", "el-001", ts=1)
        rnd = random.Random(0)
        for op in args.ops:
            for trial in range(args.trials):
                delay = rnd.uniform(0.2, 4.0)
                result = crash_trial(base, tmp, op, trial, delay)
                started = time.perf_counter()
                with Recommender.open(result["store"], encoder=encoder) as rec:
                    report = check_after_crash(rec, result["lines"])
                report.update(op=op, trial=trial, delay=round(delay, 2), reopen_s=round(time.perf_counter() - started, 2))
                rows.append(report)
                print(json.dumps(report), flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    args.out.write_text(json.dumps({"commit": commit, "machine": machine(), "trials": rows}, indent=1))
    print(crash_table({"trials": rows}))


if __name__ == "__main__":
    main()
