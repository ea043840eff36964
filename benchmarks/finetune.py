"""Zero-shot vs fine-tuned semrec (text-only and the default hybrid) vs ALS and ItemKNN on
MovieLens latest-small, one run.

Protocol: chronological leave-last-out (validation = each user's second-to-last event, test =
the last), full-catalogue ranking with each user's training items excluded, K = 10, the cold
slice = test targets with <= 2 training interactions. Fine-tuning draws its pairs from the
validation split's training events and stops early on validation NDCG@10 (of the text-only
scorer); every figure below is on the test split. Rows:

- semrec text-only = the default `ProfileConfig` user vector (summary + pooled items) against
  the item text vectors, base encoder ("zero-shot") and fine-tuned encoder;
- semrec default (hybrid) = `SemrecScorer(item_vectors, encoder, RecommenderConfig())` (text user
  vector + collaborative SVD vector + popularity prior), item vectors from that encoder;
- ItemKNN (k=10) and ALS (64 factors, alpha 2), on the same `TrainData` and `EvalTargets`.

Base-model vectors are cached under benchmarks/out/finetune-cache; the result is written to
benchmarks/out/finetune-result.json.

    .venv/bin/python benchmarks/finetune.py [--method adapter] [--max-steps 2000] [--time-budget 180]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

from semrec import RecommenderConfig
from semrec.datasets import load_movielens
from semrec.evaluation.baselines import ALS, ItemKNN
from semrec.evaluation.protocol import COLD_MAX_INTERACTIONS, evaluate
from semrec.evaluation.splits import leave_last_out
from semrec.training import SplitEvaluator, TrainConfig, finetune
from semrec.training.job import metric_values

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
OUT = Path(__file__).resolve().parent / "out"
KEYS = ("recall@10", "ndcg@10", "mrr@10", "cold_recall@10", "coverage@10")


def baselines(tester: SplitEvaluator) -> dict[str, dict]:
    """ItemKNN and ALS on the test split's own `TrainData` and `EvalTargets`."""
    out = {}
    for label, scorer in (("ItemKNN (k=10)", ItemKNN(k=10)), ("ALS (f=64, alpha=2, reg=0.01)", ALS())):
        started = time.perf_counter()
        result = evaluate(scorer.fit(tester.data), tester.data, tester.targets, k=10)
        out[label] = metric_values(result, errors=True)
        out[label]["seconds"] = round(time.perf_counter() - started, 1)
    return out


def verdict(rows: dict[str, dict], name: str, als: str) -> dict:
    """Issue 6's target for row `name`: >= 1.2x ALS on R@10 and NDCG@10, cold R@10 above every peer's."""
    row, peer = rows[name], rows[als]
    ratios = {k: row[k] / peer[k] if peer[k] else float("inf") for k in ("recall@10", "ndcg@10")}
    peers = [v for k, v in rows.items() if k != name and not k.startswith("semrec")]
    cold_lead = all(row["cold_recall@10"] > p["cold_recall@10"] for p in peers)
    return {
        "row": name,
        "recall_ratio_vs_als": round(ratios["recall@10"], 3),
        "ndcg_ratio_vs_als": round(ratios["ndcg@10"], 3),
        "cold_above_every_peer": cold_lead,
        "met": ratios["recall@10"] >= 1.2 and ratios["ndcg@10"] >= 1.2 and cold_lead,
    }


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
    load_before = os.getloadavg()
    dataset = load_movielens(DATA)
    config = TrainConfig(
        max_steps=args.max_steps, time_budget=args.time_budget, batch_size=args.batch_size,
        learning_rate=args.learning_rate, eval_every=args.eval_every, patience=3, seed=0,
    )
    report = finetune(
        dataset, None, args.out, method=args.method, config=config, max_per_user=args.max_per_user,
        item_pairs=not args.no_item_pairs, cache_dir=OUT / "finetune-cache",
        hybrid=RecommenderConfig(),
    )
    _, test = leave_last_out(dataset.events)
    tester = SplitEvaluator(dataset, test, seed=config.seed)
    text, hybrid = report.metrics["test"], report.metrics["test_hybrid"]
    rows = {
        "semrec zero-shot, text only": text["before"],
        "semrec fine-tuned, text only": text["after"],
        "semrec zero-shot, default (hybrid)": hybrid["before"],
        "semrec fine-tuned, default (hybrid)": hybrid["after"],
    }
    rows.update(baselines(tester))
    als = next(k for k in rows if k.startswith("ALS"))
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
             if k not in ("out", "no_item_pairs") and v is not None]
    flags += ["--no-item-pairs"] * args.no_item_pairs
    record = {
        "command": "python benchmarks/finetune.py " + " ".join(flags),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "load_average_start": [round(x, 2) for x in load_before],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "method": report.method,
        "hybrid": RecommenderConfig().model_dump(include={"profile", "collaborative"}),
        "training": {k: v for k, v in report.info["training"].items() if k not in ("validation", "losses")},
        "validation": report.info["training"]["validation"],
        "data": report.info["data"],
        "test_users": int(len(tester.targets.users)),
        "cold_users": int(sum(bool((tester.data.counts[t] <= COLD_MAX_INTERACTIONS).any()) for t in tester.targets.targets)),
        "test": rows,
        "target": verdict(rows, "semrec fine-tuned, default (hybrid)", als),
        "target_zero_shot": verdict(rows, "semrec zero-shot, default (hybrid)", als),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "finetune-result.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record["training"], indent=2))
    print(f"load average at start {record['load_average_start']}, at end {record['load_average_end']}; "
          f"{record['seconds_total']} s in all; {record['test_users']} test users, {record['cold_users']} cold")
    print("| method | " + " | ".join(KEYS) + " | NDCG@10 SE |")
    print("|---|" + "---|" * (len(KEYS) + 1))
    for name, values in rows.items():
        cells = [f"{values.get(k, float('nan')):.4f}" for k in KEYS] + [f"{values['ndcg@10_se']:.4f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for key in ("target", "target_zero_shot"):
        print(f"{key}: {json.dumps(record[key])}")


if __name__ == "__main__":
    main()
