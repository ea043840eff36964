"""Time `recommend` (p50/p99) at 10k and 100k items on the embedded store (Qdrant Edge) and on
qdrant-client's local mode, in one run; and `record_many` of MovieLens's 100k ratings.

Item vectors are the real all-MiniLM-L6-v2 vectors of MovieLens titles + genres; the 100k
catalogue repeats them with small noise (each copy a distinct item). Users are MovieLens users
whose histories are recorded through the library (real summaries, real encoder), then the
collaborative part is fitted, so queries run on the default hybrid vectors (384 text + 512
collaborative + 1 popularity dimensions).

    .venv/bin/python benchmarks/recommend.py [--sizes 10000 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from semrec import Recommender, load_encoder
from semrec.catalog import Item

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
OUT = Path(__file__).resolve().parent / "out"


def movie_items() -> list[Item]:
    movies = pd.read_csv(DATA / "movies.csv")
    items = []
    for row in movies.itertuples():
        genres = [] if row.genres == "(no genres listed)" else row.genres.split("|")
        item = Item(str(row.movieId), row.title, genres[0] if genres else None, genres)
        item.text = f"{row.title}. Genres: {', '.join(genres)}."
        items.append(item)
    return items


def movie_vectors(encoder, items: list[Item]) -> np.ndarray:
    texts = [i.text for i in items]
    key = hashlib.sha256((encoder.fingerprint.weights + "\n".join(texts)).encode()).hexdigest()[:16]
    cache = OUT / f"movie-vectors-{key}.npy"
    if cache.exists():
        return np.load(cache)
    OUT.mkdir(parents=True, exist_ok=True)
    vectors = encoder.encode(texts, batch_size=128)
    np.save(cache, vectors)
    return vectors


def catalogue(base_items: list[Item], base_vectors: np.ndarray, size: int, seed: int = 0):
    """`size` items: the real movies first, then noisy copies (distinct ids) of them."""
    rng = np.random.default_rng(seed)
    items, vectors = [], []
    for copy in range(-(-size // len(base_items))):
        for item, vector in zip(base_items, base_vectors):
            if len(items) == size:
                break
            suffix = "" if copy == 0 else f"-c{copy}"
            clone = Item(item.item_id + suffix, item.name, item.category, item.tags)
            clone.text = item.text
            items.append(clone)
            noisy = vector if copy == 0 else vector + rng.normal(0, 0.03, vector.shape).astype(np.float32)
            vectors.append(noisy / np.linalg.norm(noisy))
    return items, np.stack(vectors).astype(np.float32)


def build(rec: Recommender, items, vectors, batch: int = 2000) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        rec.upsert_items(items[i : i + batch], vectors[i : i + batch])
    rec.finish_indexing()
    return time.perf_counter() - start


def _percentiles(timings: list[float], prefix: str = "") -> dict:
    timings = sorted(timings)
    return {
        f"{prefix}p50_ms": round(statistics.median(timings), 2),
        f"{prefix}p99_ms": round(timings[min(len(timings) - 1, int(0.99 * len(timings)))], 2),
    }


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def time_recommend(rec: Recommender, users: list[str], queries: int) -> dict:
    """The first call per user (nothing of theirs cached in the process), then `queries` calls
    cycling through the users (steady state), with and without reasons."""
    first = [_timed(lambda: rec.recommend(user, k=10)) for user in users]
    steady = [_timed(lambda: rec.recommend(users[i % len(users)], k=10)) for i in range(queries)]
    bare = [_timed(lambda: rec.recommend(users[i % len(users)], k=10, explain_results=False)) for i in range(queries)]
    return {**_percentiles(steady), **_percentiles(first, "first_call_"), **_percentiles(bare, "no_reasons_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--users", type=int, default=50, help="users recorded in the timed stores")
    args = parser.parse_args()

    encoder = load_encoder(backend="torch")
    base_items = movie_items()
    base_vectors = movie_vectors(encoder, base_items)
    ratings = pd.read_csv(DATA / "ratings.csv").rename(columns={"userId": "user_id", "movieId": "item_id", "timestamp": "ts"})
    ratings["item_id"] = ratings["item_id"].astype(str)
    ratings["kind"] = "rating"
    ratings["weight"] = ratings["rating"] / 5.0
    bench_users = sorted(ratings.user_id.unique())[: args.users]
    user_events = ratings[ratings.user_id.isin(bench_users)]
    results: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                     f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}"}

    work = Path(tempfile.mkdtemp(prefix="semrec-bench-"))
    try:
        # record_many of all 100k MovieLens ratings (610 users) on the embedded store.
        rec = Recommender.open(work / "ml", encoder=encoder)
        items, vectors = catalogue(base_items, base_vectors, len(base_items))
        build(rec, items, vectors)
        start = time.perf_counter()
        report = rec.record_many(ratings[["user_id", "item_id", "kind", "ts", "weight"]])
        results["record_many"] = {"events": report.events, "users": report.users,
                                  "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(results["record_many"]))
        rec.close()

        for size in args.sizes:
            items, vectors = catalogue(base_items, base_vectors, size)
            row = {}
            for backend in ("edge", "local"):
                if backend == "edge":
                    rec = Recommender.open(work / f"edge-{size}", encoder=encoder)
                else:
                    rec = Recommender.open(url=":memory:", encoder=encoder)
                load_s = build(rec, items, vectors)
                rec.record_many(user_events[["user_id", "item_id", "kind", "ts", "weight"]])
                rec.fit_collaborative()  # the default hybrid layout: [text | collaborative | popularity]
                queries = args.queries if backend == "edge" else max(20, args.queries // 10)
                row[backend] = {"load_s": round(load_s, 1), "queries": queries,
                                **time_recommend(rec, [str(u) for u in bench_users], queries)}
                rec.close()
                print(size, backend, json.dumps(row[backend]), flush=True)
            row["local_over_edge_p50"] = round(row["local"]["p50_ms"] / row["edge"]["p50_ms"], 1)
            results[str(size)] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
