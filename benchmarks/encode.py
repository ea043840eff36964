"""Encoding speed and fidelity of every encoder backend, in one run, on the same texts.

For each backend: items/s (median over repeats, backends interleaved so that noise from other
processes hits them alike), the ratio to the plain torch backend, mean cosine and top-10
neighbour overlap against fp32 torch, and single-query latency p50/p95.

Usage:
    python benchmarks/encode.py [--items 2000] [--repeats 3] [--queries 200] [--out FILE]

Texts: MovieLens titles + genres (+ up to 3 user tags) from
/work/shared/data/ml-latest-small when present (about 20 tokens each), else semrec's shipped
texts. int8 exports are calibrated on other rows of the same catalogue.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semrec.encoders import AUTO_ORDER, FAST_CPU_BACKENDS, load_encoder
from semrec.encoders._calibration_texts import CALIBRATION_TEXTS
from semrec.encoders.quality_guard import (
    MIN_MEAN_COSINE,
    MIN_TOP10_OVERLAP,
    top_k_overlap,
)

DATA = Path("/work/shared/data/ml-latest-small")


def movie_texts(data: Path = DATA) -> list[str]:
    tags: dict[str, list[str]] = defaultdict(list)
    with open(data / "tags.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["tag"] not in tags[row["movieId"]]:
                tags[row["movieId"]].append(row["tag"])
    texts = []
    with open(data / "movies.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = f"Movie: {row['title']}. Genres: {', '.join(row['genres'].split('|'))}."
            if tags[row["movieId"]]:
                text += f" Tags: {', '.join(tags[row['movieId']][:3])}."
            texts.append(text)
    return texts


def machine_info() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import openvino
    import torch

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_bf16")
    isa = [f for f in wanted if f" {f}" in flags]
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} usable cores ({', '.join(isa)}), "
        f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{onnxruntime.__version__}, openvino {openvino.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backends", default=",".join(FAST_CPU_BACKENDS))
    ap.add_argument("--cache-dir", default=None, help="export cache (default: a fresh temp dir)")
    ap.add_argument("--out", default=None, help="also write the markdown report here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    if (DATA / "movies.csv").exists():
        catalog, source = movie_texts(), "MovieLens ml-latest-small titles + genres + tags"
    else:
        catalog, source = list(CALIBRATION_TEXTS) * 20, "semrec's shipped texts (repeated)"
    texts = catalog[: args.items]
    calibration = catalog[args.items : args.items + 300] or list(CALIBRATION_TEXTS)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="semrec-bench-cache-")
    info = machine_info()
    print(info, flush=True)

    encoders, load_s = {}, {}
    for name in ["torch", *args.backends.split(",")]:
        t0 = time.perf_counter()
        encoders[name] = load_encoder(None, name, calibration, cache_dir=cache_dir)
        load_s[name] = time.perf_counter() - t0
        print(f"loaded {name} in {load_s[name]:.1f}s (includes a first-time export)", flush=True)
    auto = load_encoder(None, "auto", calibration, device="cpu", cache_dir=cache_dir).backend
    print(f"backend='auto' (order {', '.join(AUTO_ORDER)}) picks {auto}", flush=True)
    tokens = [len(t) for t in encoders["torch"].model.tokenizer(texts)["input_ids"]]

    # warm-up (first shapes, thread pools), then interleaved timed repeats
    for enc in encoders.values():
        enc.encode(texts[:256], batch_size=args.batch_size)
    rates: dict[str, list[float]] = defaultdict(list)
    vectors: dict[str, np.ndarray] = {}
    for rep in range(args.repeats):
        for name, enc in encoders.items():
            time.sleep(0.5)  # the previous runtime's idle worker threads stop spinning first
            t0 = time.perf_counter()
            vectors[name] = enc.encode(texts, batch_size=args.batch_size)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
        print(f"repeat {rep + 1}: " + ", ".join(f"{n} {r[-1]:.0f}/s" for n, r in rates.items()),
              flush=True)

    # Single queries: one backend at a time. Interleaving them (as for throughput) puts each
    # query right after another runtime's, whose idle worker threads still spin on both cores
    # (measured: openvino-fp32 p50 18.7 ms interleaved vs 9.6 ms alone, torch 99 vs 25).
    queries = [texts[(i * 7919) % len(texts)] for i in range(args.queries)]
    latency: dict[str, list[float]] = defaultdict(list)
    for name, enc in encoders.items():
        for q in queries[:20]:
            enc.encode_query(q)
        time.sleep(0.5)  # let the previous runtime's threads go idle
        for q in queries:
            t0 = time.perf_counter()
            enc.encode_query(q)
            latency[name].append((time.perf_counter() - t0) * 1000)

    ref = vectors["torch"]
    base = statistics.median(rates["torch"])
    rows = []
    for name in encoders:
        cos = np.sum(ref * vectors[name], axis=1)
        lat = np.asarray(latency[name])
        rows.append(
            f"| {name} | {statistics.median(rates[name]):.0f} | "
            f"{statistics.median(rates[name]) / base:.2f}x | {cos.mean():.4f} | {cos.min():.4f} | "
            f"{top_k_overlap(ref, vectors[name], 10):.3f} | {np.percentile(lat, 50):.2f} | "
            f"{np.percentile(lat, 95):.2f} | {load_s[name]:.0f} |"
        )
    command = "python benchmarks/encode.py " + " ".join(sys.argv[1:])
    report = "\n".join(
        [
            (
                f"Texts: {len(texts)} items from {source}; tokens per text mean "
                f"{np.mean(tokens):.1f}, median {np.median(tokens):.0f}, max {max(tokens)}. "
                f"Batch size {args.batch_size}; {args.repeats} interleaved repeats (median); "
                f"{args.queries} single queries per backend (one backend at a time). int8 calibrated on "
                f"{len(calibration)} other catalogue texts."
            ),
            f"Machine: {info}.",
            f"Command: `{command.strip()}`",
            (
                f"backend='auto' on this machine tries {', '.join(AUTO_ORDER)} and, guarded on "
                f"the calibration texts, picks **{auto}**."
            ),
            "",
            (
                "| backend | items/s | vs torch | mean cos | min cos | top-10 overlap | "
                "query p50 ms | query p95 ms | load s |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            (
                f"Guard thresholds: mean cosine >= {MIN_MEAN_COSINE}, top-10 overlap >= "
                f"{MIN_TOP10_OVERLAP}. 'load s' includes the one-time export when the cache "
                f"was empty ({'reused' if args.cache_dir else 'fresh'} cache in this run)."
            ),
        ]
    )
    print()
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
