"""Does treating low ratings as dislikes hurt the default? MovieLens latest-small, live path.

Protocol (leave-last-out on the positives): for each user, the test item is their last rated
item with a rating above 2 stars (by time); every earlier rating is training data, recorded
through a real `Recommender` on an embedded store with the default configuration, then
`fit_collaborative()` and `recommend(user, k=10)` (seen items excluded) per user. Two arms on
copies of one indexed store, in the same run:

- default: every training rating is a positive event (kind "rating"), as semrec does today;
- dislikes: training ratings <= 2 stars are recorded as kind "dislike" (left out and pushed
  away, see `ProfileConfig.negative_kinds`), the others as "rating".

R@10 (= hit rate, one target per user) and NDCG@10 with standard errors over users.

    .venv/bin/python benchmarks/negatives.py [--users 610]

Writes benchmarks/negatives.json (raw figures, git commit, CPU) and prints the RESULTS.md rows.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from semrec import Recommender, load_encoder

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "ml-latest-small"
sys.path.insert(0, str(HERE))
from crash import machine  # noqa: E402


def catalog() -> pd.DataFrame:
    movies = pd.read_csv(DATA / "movies.csv")
    genres = movies.genres.replace("(no genres listed)", "")
    return pd.DataFrame({
        "item_id": movies.movieId.astype(str),
        "name": movies.title,
        "category": genres.str.split("|").str[0].replace("", None),
        "tags": genres,
    })


def split(users: int) -> tuple[pd.DataFrame, dict[str, str]]:
    ratings = pd.read_csv(DATA / "ratings.csv").sort_values(["userId", "timestamp", "movieId"])
    ratings = ratings[ratings.userId.isin(sorted(ratings.userId.unique())[:users])]
    train, targets = [], {}
    for user, rows in ratings.groupby("userId"):
        positive = rows[rows.rating > 2]
        if positive.empty or len(rows) < 2:
            continue
        last = positive.index[-1]
        targets[str(user)] = str(rows.loc[last, "movieId"])
        train.append(rows.loc[rows.timestamp <= rows.loc[last, "timestamp"]].drop(index=last))
    frame = pd.concat(train)
    events = pd.DataFrame({
        "user_id": frame.userId.astype(str), "item_id": frame.movieId.astype(str),
        "ts": frame.timestamp.astype(float), "rating": frame.rating,
    })
    return events, targets


def run_arm(store: Path, encoder, events: pd.DataFrame, targets: dict[str, str], dislikes: bool, profile: dict) -> dict:
    kinds = np.where(dislikes & (events.rating <= 2), "dislike", "rating")
    started = time.perf_counter()
    config = {"profile": profile} if dislikes and profile else None
    with Recommender.open(store, encoder=encoder, config=config) as rec:
        report = rec.record_many(events.assign(kind=kinds)[["user_id", "item_id", "kind", "ts"]], on_unknown_item="skip")
        rec.fit_collaborative()
        hits, gains = [], []
        for user, target in targets.items():
            ranked = rec.recommend(user, k=10, explain_results=False).item_ids
            rank = ranked.index(target) if target in ranked else None
            hits.append(rank is not None)
            gains.append(1 / math.log2(rank + 2) if rank is not None else 0.0)
    n = len(hits)
    recall, ndcg = float(np.mean(hits)), float(np.mean(gains))
    return {
        "arm": ("dislikes " + json.dumps(profile) if profile else "dislikes") if dislikes else "default", "users": n, "events": report.events,
        "dislike_events": int((kinds == "dislike").sum()),
        "R@10": round(recall, 4), "R@10_se": round(float(np.std(hits, ddof=1) / math.sqrt(n)), 4),
        "NDCG@10": round(ndcg, 4), "NDCG@10_se": round(float(np.std(gains, ddof=1) / math.sqrt(n)), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=610)
    parser.add_argument("--out", type=Path, default=HERE / "negatives.json")
    parser.add_argument("--negative-weight", type=float, nargs="*", default=[], help="extra dislike arms with these negative_weight values")
    parser.add_argument("--near-duplicate", type=float, default=None, help="near_duplicate of the extra arms")
    args = parser.parse_args()
    encoder = load_encoder()
    events, targets = split(args.users)
    tmp = Path(tempfile.mkdtemp(prefix="semrec-negatives-"))
    with Recommender.open(tmp / "base", encoder=encoder) as rec:
        rec.index_items(catalog())
    rows = []
    arms = [(False, {}), (True, {})]
    for weight in args.negative_weight:
        profile = {"negative_weight": weight}
        if args.near_duplicate is not None:
            profile["near_duplicate"] = args.near_duplicate
        arms.append((True, profile))
    for n, (dislikes, profile) in enumerate(arms):
        store = tmp / f"arm{n}"
        shutil.copytree(tmp / "base", store)
        rows.append(run_arm(store, encoder, events, targets, dislikes, profile))
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    args.out.write_text(json.dumps({"commit": commit, "machine": machine(), "encoder": encoder.backend, "arms": rows}, indent=1))
    print("| arm | users | dislike events | R@10 (SE) | NDCG@10 (SE) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['users']} | {r['dislike_events']} | {r['R@10']:.4f} ({r['R@10_se']:.4f}) | {r['NDCG@10']:.4f} ({r['NDCG@10_se']:.4f}) |")


if __name__ == "__main__":
    main()
