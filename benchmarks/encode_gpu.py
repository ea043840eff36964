"""End-to-end GPU encoding of a large catalogue (issue 5's GPU target): semrec's "gpu" backend
against sentence-transformers' `encode` on the same device, in one run.

Reports items/s of:
- sentence-transformers `encode` at its defaults (batch 32, fp32), and in half precision at the
  batch sizes given (the best is "st_best"), on the first `--st-items` texts;
- semrec's gpu backend end to end (`GpuEncoder.encode`): the first call, which starts the
  tokenising worker processes, and the median of `--repeats` further calls;
- its two halves apart: the input pipeline alone (tokenise, bucket, pad, pin; with the worker
  processes and with one thread) and the model alone on pre-made batches;
and the gpu backend's mean / min cosine and top-10 overlap against fp32 torch on a sample.
Each figure is printed as a JSON line when measured; the whole record at the end (and `--out`).

Texts: MovieLens titles + genres + tags (about 20 tokens each), cycled with a numbered suffix to
`--items` distinct texts; semrec's shipped texts when the data folder is absent.

    python benchmarks/encode_gpu.py [--items 200000] [--repeats 3] [--model DIR] [--data DIR]
    python benchmarks/encode_gpu.py --device cpu --items 3000 --st-items 500 --repeats 1  # smoke
    python benchmarks/encode_gpu.py --device cpu --pipeline-only 0 1 2 --items 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from semrec.encoders import SentenceTransformerEncoder
from semrec.encoders._calibration_texts import CALIBRATION_TEXTS
from semrec.encoders.gpu_backend import GpuEncoder
from semrec.encoders.quality_guard import top_k_overlap


def catalogue_texts(n: int, data: Path | None = None) -> list[str]:
    from encode import DATA, movie_texts

    data = data or DATA
    base = movie_texts(data) if (data / "movies.csv").exists() else list(CALIBRATION_TEXTS)
    return [
        base[i % len(base)] + (f" Copy {i // len(base)}." if i >= len(base) else "")
        for i in range(n)
    ]


def timed(call, sync) -> float:
    sync()
    start = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - start


def rate(call, n: int, repeats: int, sync) -> float:
    """Median items/s over `repeats` timed calls (the caller warms up first)."""
    return n / statistics.median(timed(call, sync) for _ in range(repeats))


def measure_st(args, texts: list[str], half, sync, report) -> dict[int, float]:
    """sentence-transformers' own `encode`: defaults (fp32, batch 32), then half precision at
    each batch size; returns items/s by half-precision batch size."""
    st = SentenceTransformerEncoder(args.model, device=args.device).model
    st.encode(texts[:2048])
    report("st_default_fp32", rate(lambda: st.encode(texts), len(texts), args.repeats, sync))
    st = st.to(dtype=half)
    rates = {}
    for size in args.st_batch_sizes:
        st.encode(texts[:2048], batch_size=size)
        value = rate(
            lambda size=size: st.encode(texts, batch_size=size), len(texts), args.repeats, sync
        )
        report(f"st_{str(half).removeprefix('torch.')}_batch_{size}", value)
        rates[size] = value
    return rates


def pipeline_rate(gpu: GpuEncoder, texts: list[str], repeats: int, sync) -> float:
    """items/s of the input side alone: tokenise, bucket, pad, pin (no model)."""
    return rate(lambda: sum(1 for _ in gpu.batches(texts)), len(texts), repeats, sync)


def measure_gpu(gpu: GpuEncoder, texts: list[str], repeats: int, sync, report) -> None:
    """semrec's gpu backend end to end, then its input pipeline and its model apart."""
    report("semrec_gpu_backend", f"{gpu.backend}, {gpu.workers} tokenising processes")
    gpu.encode(texts[:2048])  # one chunk: warms the kernels, starts no workers
    report("semrec_gpu_first_call", len(texts) / timed(lambda: gpu.encode(texts), sync))
    report("semrec_gpu", rate(lambda: gpu.encode(texts), len(texts), repeats, sync))
    report("input_pipeline_workers", pipeline_rate(gpu, texts, repeats, sync))
    made = list(gpu.batches(texts))

    def model_only():
        for _rows, ids, mask in made:
            gpu.embed_batch(ids, mask)

    model_only()
    report("model_only", rate(model_only, len(texts), repeats, sync))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default=None, help="model folder (default: the packaged model)")
    ap.add_argument("--data", type=Path, default=None, help="MovieLens folder for the texts")
    ap.add_argument("--st-items", type=int, default=50_000, help="texts for the st baselines")
    ap.add_argument("--st-batch-sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument(
        "--workers", type=int, default=None, help="tokenising processes (default: auto)"
    )
    ap.add_argument("--sample", type=int, default=2000, help="texts compared with fp32")
    ap.add_argument(
        "--pipeline-only",
        type=int,
        nargs="+",
        metavar="WORKERS",
        help="measure only the input pipeline, once per worker count given (no GPU needed)",
    )
    ap.add_argument("--out", default=None, help="also write the JSON results here")
    args = ap.parse_args()

    import torch

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    half = (
        (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if cuda
        else torch.float32
    )
    texts = catalogue_texts(args.items, args.data)
    st_texts = texts[: args.st_items]
    reference = SentenceTransformerEncoder(args.model, device="cpu")
    results: dict = {
        "machine": (torch.cuda.get_device_name() if cuda else platform.processor() or "cpu")
        + f"; {os.cpu_count()} CPUs; torch {torch.__version__}; python {platform.python_version()}",
        "items": len(texts),
        "command": "python benchmarks/encode_gpu.py " + " ".join(sys.argv[1:]),
    }

    def report(key: str, value) -> None:
        results[key] = value
        print(json.dumps({key: round(value) if isinstance(value, float) else value}), flush=True)

    if args.pipeline_only:
        for workers in args.pipeline_only:
            gpu = GpuEncoder(reference, device=args.device, workers=workers)
            sum(1 for _ in gpu.batches(texts))  # starts the workers
            report(
                f"input_pipeline_{workers}_workers", pipeline_rate(gpu, texts, args.repeats, sync)
            )
            gpu.close()
        print(json.dumps(results, indent=2))
        return
    half_rates = measure_st(args, st_texts, half, sync, report)
    best = max(half_rates, key=half_rates.get)
    results["st_best"] = {"batch_size": best, "items_per_s": half_rates[best]}
    gpu = GpuEncoder(reference, device=args.device, workers=args.workers)
    measure_gpu(gpu, texts, args.repeats, sync, report)
    gpu.close()
    report(
        "input_pipeline_one_thread",
        pipeline_rate(
            GpuEncoder(reference, device=args.device, workers=0), texts, args.repeats, sync
        ),
    )
    results["semrec_vs_st_default"] = results["semrec_gpu"] / results["st_default_fp32"]
    results["semrec_vs_st_best"] = results["semrec_gpu"] / results["st_best"]["items_per_s"]

    sample = texts[: args.sample]
    ref, got = reference.encode(sample), gpu.encode(sample)
    cos = np.sum(ref * got, axis=1)
    results["fidelity"] = {
        "mean_cos": float(cos.mean()),
        "min_cos": float(cos.min()),
        "top10_overlap": float(top_k_overlap(ref, got, 10)),
        "texts": len(sample),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
