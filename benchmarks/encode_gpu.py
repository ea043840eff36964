"""End-to-end GPU encoding of a large catalogue (issue 5's GPU target): semrec's "gpu" backend
against sentence-transformers' `encode` on the same device, in one run.

Reports items/s (median over repeats) of:
- sentence-transformers `encode` at its defaults (batch 32, fp32) and at its best batch size in
  half precision (the fastest of the batch sizes tried);
- semrec's `load_encoder(backend="gpu")` (pre-tokenised, length-bucketed bf16/fp16 batches,
  tokenisation overlapped with the GPU);
and the gpu backend's mean / min cosine and top-10 overlap against fp32 on a sample.

Texts: MovieLens titles + genres + tags (about 20 tokens each), cycled with a numbered suffix to
`--items` distinct texts; semrec's shipped texts when the data folder is absent.

    .venv/bin/python benchmarks/encode_gpu.py [--items 200000] [--repeats 3]
    .venv/bin/python benchmarks/encode_gpu.py --device cpu --items 2000 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
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


def catalogue_texts(n: int) -> list[str]:
    from encode import DATA, movie_texts

    base = movie_texts() if (DATA / "movies.csv").exists() else list(CALIBRATION_TEXTS)
    return [base[i % len(base)] + (f" Copy {i // len(base)}." if i >= len(base) else "") for i in range(n)]


def rate(call, n: int, repeats: int, sync) -> float:
    """Median items/s over `repeats` timed calls (the caller warms up first)."""
    timings = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        call()
        sync()
        timings.append(time.perf_counter() - start)
    return n / statistics.median(timings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--st-batch-sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--sample", type=int, default=2000, help="texts compared with fp32")
    ap.add_argument("--out", default=None, help="also write the JSON results here")
    args = ap.parse_args()

    import torch

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    half = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    texts = catalogue_texts(args.items)
    reference = SentenceTransformerEncoder(None, device="cpu")
    results: dict = {
        "machine": (torch.cuda.get_device_name() if cuda else platform.processor() or "cpu")
        + f"; torch {torch.__version__}; python {platform.python_version()}",
        "items": len(texts),
        "command": "python benchmarks/encode_gpu.py " + " ".join(sys.argv[1:]),
    }

    st = SentenceTransformerEncoder(None, device=args.device).model
    st.encode(texts[:2048])
    results["st_default_fp32"] = rate(lambda: st.encode(texts), len(texts), args.repeats, sync)
    print(json.dumps({"st_default_fp32": round(results["st_default_fp32"])}), flush=True)
    st = st.to(dtype=half)
    best = {}
    for batch_size in args.st_batch_sizes:
        st.encode(texts[:2048], batch_size=batch_size)
        best[batch_size] = rate(lambda: st.encode(texts, batch_size=batch_size), len(texts), args.repeats, sync)
        print(json.dumps({f"st_{str(half).removeprefix('torch.')}_batch_{batch_size}": round(best[batch_size])}), flush=True)
    results["st_best"] = {"batch_size": max(best, key=best.get), "items_per_s": max(best.values())}
    del st

    gpu = GpuEncoder(reference, device=args.device)
    gpu.encode(texts[:2048])
    results["semrec_gpu"] = rate(lambda: gpu.encode(texts), len(texts), args.repeats, sync)
    results["semrec_gpu_backend"] = gpu.backend
    results["semrec_vs_st_default"] = results["semrec_gpu"] / results["st_default_fp32"]
    results["semrec_vs_st_best"] = results["semrec_gpu"] / results["st_best"]["items_per_s"]

    sample = texts[: args.sample]
    ref, got = reference.encode(sample), gpu.encode(sample)
    cos = np.sum(ref * got, axis=1)
    results["fidelity"] = {"mean_cos": float(cos.mean()), "min_cos": float(cos.min()),
                           "top10_overlap": float(top_k_overlap(ref, got, 10)), "texts": len(sample)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
