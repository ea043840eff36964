"""Zero-shot vs fine-tuned semrec vs ALS and ItemKNN on MovieLens latest-small, one run.

Protocol: chronological leave-last-out (validation = each user's second-to-last event, test =
the last), full-catalogue ranking with each user's training items excluded, K = 10, the cold
slice = test targets with <= 2 training interactions. Fine-tuning draws its pairs from the
validation split's training events and stops early on validation NDCG@10; every figure below is
on the test split. semrec = the default `ProfileConfig` (summary + pooled items, text_weight 0.5).
Base-model vectors are cached under benchmarks/out/finetune-cache.

    .venv/bin/python benchmarks/finetune.py [--method adapter] [--max-steps 2000] [--time-budget 180]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

from semrec.datasets import load_movielens
from semrec.evaluation.baselines import ALS, ItemKNN
from semrec.evaluation.protocol import EvalTargets, TrainData, evaluate
from semrec.evaluation.splits import leave_last_out
from semrec.training import TrainConfig, finetune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
OUT = Path(__file__).resolve().parent / "out"
KEYS = ("recall@10", "ndcg@10", "mrr@10", "cold_recall@10", "coverage@10")


def baselines(dataset, test) -> dict[str, dict]:
    from semrec.catalog import load_catalog

    items = load_catalog(dataset.catalog(test.tag_cutoff)).items
    data = TrainData.build(test.train, items)
    targets = EvalTargets.build(test, data)
    out = {}
    for scorer in (ItemKNN(k=10), ALS()):
        started = time.perf_counter()
        result = evaluate(scorer.fit(data), data, targets, k=10)
        out[scorer.name] = {k: float(getattr(v, "mean", v)) for k, v in result.items()}
        out[scorer.name]["ndcg@10_se"] = float(result["ndcg@10"].se)
        out[scorer.name]["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="auto", choices=["auto", "full", "adapter"])
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--time-budget", type=float, default=180.0, help="seconds of training")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--max-per-user", type=int, default=3)
    parser.add_argument("--no-item-pairs", action="store_true")
    parser.add_argument("--out", default=str(OUT / "finetuned-minilm"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()
    dataset = load_movielens(DATA)
    config = TrainConfig(
        max_steps=args.max_steps, time_budget=args.time_budget, batch_size=args.batch_size,
        learning_rate=args.learning_rate, eval_every=args.eval_every, patience=3, seed=0,
    )
    report = finetune(
        dataset, None, args.out, method=args.method, config=config, max_per_user=args.max_per_user,
        item_pairs=not args.no_item_pairs, cache_dir=OUT / "finetune-cache",
    )
    _, test = leave_last_out(dataset.events)
    rows = {"semrec zero-shot": report.metrics["test"]["before"], "semrec fine-tuned": report.metrics["test"]["after"]}
    rows.update(baselines(dataset, test))
    record = {
        "command": "python benchmarks/finetune.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "no_item_pairs") and v is not None
        ) + (" --no-item-pairs" if args.no_item_pairs else ""),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "method": report.method,
        "training": {k: v for k, v in report.info["training"].items() if k != "validation"},
        "validation": report.info["training"]["validation"],
        "data": report.info["data"],
        "test": rows,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "finetune-result.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record["training"], indent=2))
    print("| method | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values.get(k, float('nan')):.4f}" for k in KEYS) + " |")
    als = next(v for k, v in rows.items() if k.startswith("als"))
    tuned = rows["semrec fine-tuned"]
    for key in ("recall@10", "ndcg@10", "cold_recall@10"):
        ratio = f"{tuned[key] / als[key]:.2f}x" if als[key] > 0 else "n/a (ALS 0)"
        print(f"fine-tuned / ALS {key}: {tuned[key]:.4f} vs {als[key]:.4f} = {ratio}")


if __name__ == "__main__":
    main()
