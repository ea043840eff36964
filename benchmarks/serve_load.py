"""Load on `semrec serve` (127.0.0.1, embedded store): recommendation latency while events stream
in, and event throughput posted one per request and in batches of 100, with 8 concurrent clients.

Phases, in order (after one unmeasured request per user, to warm the caches): paced (4 clients ask for recommendations and 4 post events on a fixed schedule,
latency counted from when each request was due), mixed (the same 4 + 4 back to back: saturated),
single (8 clients post single events back to back), batched (8 clients post batches of 100).

The catalog is MovieLens's ~9.7k movies (titles, genres, tags: the real all-MiniLM-L6-v2 vectors),
200 MovieLens users' ratings recorded and the collaborative part fitted, so queries run on the
default hybrid vectors. Every posted event must show in the user's very next recommendation
request (the item is excluded as seen) and in their profile at the end.

    .venv/bin/python benchmarks/serve_load.py [--requests 200] [--clients 8] [--sync-updates]

Writes benchmarks/serve_load.json (raw figures, git commit, CPU) and prints the RESULTS.md rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pandas as pd

from semrec import Recommender, load_encoder

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "ml-latest-small"
sys.path.insert(0, str(HERE))
from crash import machine  # noqa: E402


def build_store(path: Path, users: int) -> tuple[list[str], list[str]]:
    movies = pd.read_csv(DATA / "movies.csv")
    tags = pd.read_csv(DATA / "tags.csv").groupby("movieId")["tag"].apply(lambda t: "|".join(dict.fromkeys(map(str, t))))
    catalog = pd.DataFrame({
        "item_id": movies.movieId.astype(str),
        "name": movies.title,
        "category": movies.genres.str.split("|").str[0],
        "tags": movies.movieId.map(tags).fillna("") + "|" + movies.genres,
    })
    ratings = pd.read_csv(DATA / "ratings.csv")
    chosen = sorted(ratings.userId.unique())[:users]
    events = ratings[ratings.userId.isin(chosen)].rename(columns={"userId": "user_id", "movieId": "item_id", "timestamp": "ts"})
    events = events.assign(user_id=events.user_id.astype(str), item_id=events.item_id.astype(str), kind="rating")
    with Recommender.open(path, encoder=load_encoder()) as rec:
        rec.index_items(catalog)
        rec.record_many(events[["user_id", "item_id", "kind", "ts"]], on_unknown_item="skip")
        rec.fit_collaborative()
    return list(catalog.item_id), [str(u) for u in chosen]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per client and phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--paced-rate", type=float, default=50.0,
                        help="paced phase: recommendations/s and events/s offered (each)")
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--sync-updates", action="store_true",
                        help="serve with --sync-updates (summaries and popularity updated before each answer)")
    parser.add_argument("--out", type=Path, default=HERE / "serve_load.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="semrec-load-"))
    started = time.perf_counter()
    items, users = build_store(tmp / "store", args.users)
    build_s = time.perf_counter() - started
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "semrec.cli", "serve", "--store", str(tmp / "store"), "--port", str(port), "--log-level", "warning",
         "--sync-updates" if args.sync_updates else "--background-updates"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"), env={**os.environ, "SEMREC_API_KEY": ""},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        report = {"items": len(items), "users": len(users), "clients": args.clients, "build_s": round(build_s, 1),
                  "updates": "sync" if args.sync_updates else "background"}
        report["warm_up_s"] = warm_up(base, users)
        # paced first: its latency is that of its own load, not of a backlog the saturated phases leave
        report["paced"] = paced_phase(base, items, users, args)
        report["mixed"] = mixed_phase(base, items, users, args)
        report["single"] = single_phase(base, items, args)
        report["batched"] = batched_phase(base, items, args)
        report["client_failures"] = CLIENT_FAILURES[:5]
        report["errors"] = sum(report[phase]["errors"] for phase in ("mixed", "paced", "single", "batched")) + len(CLIENT_FAILURES)
    finally:
        server.terminate()
        server.wait(60)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    args.out.write_text(json.dumps({"commit": commit, "machine": machine(), **report}, indent=1))
    print(json.dumps(report, indent=1))


#: Clients that stopped on an exception (a timed-out request, a refused connection): each is an error.
CLIENT_FAILURES: list[str] = []


def run_clients(targets: list) -> float:
    """Run `targets[w](w)` in one thread each; the seconds until all finished. A client that
    raises stops there and is counted in CLIENT_FAILURES."""

    def guarded(target, w: int) -> None:
        try:
            target(w)
        except Exception as exc:  # noqa: BLE001 - reported, never silently lost
            CLIENT_FAILURES.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=(target, w)) for w, target in enumerate(targets)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def mixed_phase(base: str, items: list[str], users: list[str], args) -> dict:
    """Half the clients ask for recommendations, half post single events, each followed by that
    user's next recommendation (which must exclude the item just posted)."""
    latencies: list[float] = []
    posted = [0]
    errors: list[str] = []
    not_reflected = [0]
    lock = threading.Lock()
    sent: dict[str, set] = defaultdict(set)

    def reader(worker: int) -> None:
        rnd = random.Random(worker)
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(args.requests):
                t0 = time.perf_counter()
                response = client.get(f"/users/{rnd.choice(users)}/recommendations", params={"k": 10})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        errors.append(response.text[:200])

    def writer(worker: int) -> None:
        rnd = random.Random(100 + worker)
        with httpx.Client(base_url=base, timeout=30) as client:
            for n in range(args.requests):
                user, item = f"live-{worker}-{n % 20}", rnd.choice(items)
                response = client.post("/events", json={"user_id": user, "item_id": item, "ts": 1_700_000_000 + n})
                if response.status_code != 200:
                    with lock:
                        errors.append(response.text[:200])
                    continue
                t0 = time.perf_counter()
                recs = client.get(f"/users/{user}/recommendations", params={"k": 10})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    posted[0] += response.json()["recorded"]
                    sent[user].add(item)
                    if recs.status_code != 200 or item in {r["item_id"] for r in recs.json()["results"]}:
                        not_reflected[0] += 1

    seconds = run_clients([reader if w % 2 else writer for w in range(args.clients)])
    with httpx.Client(base_url=base, timeout=30) as client:
        missing = sum(len(items_sent - set(client.get(f"/users/{u}").json()["seen"])) for u, items_sent in sent.items())
    return {
        "seconds": round(seconds, 2), "recommendations": len(latencies),
        "rec_p50_ms": round(statistics.median(latencies) * 1000, 2), "rec_p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "rec_p99_ms": round(percentile(latencies, 99) * 1000, 2), "rec_max_ms": round(max(latencies) * 1000, 2),
        "events_posted_one_per_request": posted[0], "events_per_s_single": round(posted[0] / seconds, 1),
        "not_reflected_in_next_recommendation": not_reflected[0], "missing_from_profiles": missing, "errors": len(errors),
        "first_errors": errors[:3],
    }


def warm_up(base: str, users: list[str]) -> float:
    """Ask once for every user's recommendations (not measured): the first requests after a
    start fill the caches and page the engine's files in. Returns the seconds it took."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as client:
        for user in users:
            client.get(f"/users/{user}/recommendations", params={"k": 10})
    return round(time.perf_counter() - started, 2)


def paced_phase(base: str, items: list[str], users: list[str], args) -> dict:
    """Recommendation latency at a stated load, not at saturation: 4 clients ask for
    recommendations and 4 post single events, each on a fixed schedule (together `--paced-rate`
    recommendations/s and as many events/s) for `--paced-seconds`. A request's latency counts
    from when it was due, so a slow answer also delays (and charges) the ones behind it."""
    latencies: list[float] = []
    errors: list[str] = []
    done = {"recommendations": 0, "events": 0}
    lock = threading.Lock()
    interval = 4 / args.paced_rate  # each of the 4 clients of a kind sends every `interval` s
    count = int(args.paced_seconds / interval)
    started = time.perf_counter() + 0.5

    def client(w: int) -> None:
        reads = w % 2 == 1
        rnd = random.Random(2000 + w)
        with httpx.Client(base_url=base, timeout=30) as http:
            for n in range(count):
                due = started + (n + (w // 2) / 4) * interval
                time.sleep(max(0.0, due - time.perf_counter()))
                if reads:
                    response = http.get(f"/users/{rnd.choice(users)}/recommendations", params={"k": 10})
                else:
                    response = http.post("/events", json={"user_id": f"paced-{w}-{n % 20}", "item_id": rnd.choice(items), "ts": 1_700_000_000 + n})
                finished = time.perf_counter()
                with lock:
                    if response.status_code != 200:
                        errors.append(response.text[:200])
                    elif reads:
                        latencies.append(finished - due)
                        done["recommendations"] += 1
                    else:
                        done["events"] += 1

    seconds = run_clients([client] * 8)
    return {
        "offered_per_s": args.paced_rate, "seconds": round(seconds, 2), "recommendations": done["recommendations"],
        "recommendations_per_s": round(done["recommendations"] / seconds, 1), "events_per_s": round(done["events"] / seconds, 1),
        "rec_p50_ms": round(statistics.median(latencies) * 1000, 2), "rec_p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "rec_p99_ms": round(percentile(latencies, 99) * 1000, 2), "rec_max_ms": round(max(latencies) * 1000, 2),
        "errors": len(errors), "first_errors": errors[:3],
    }


def reflected(base: str, sent: dict[str, set]) -> dict:
    """Ask each user's next recommendation and profile: every item sent must be excluded as seen
    and stored in the profile."""
    shown = missing = 0
    with httpx.Client(base_url=base, timeout=30) as client:
        for user, items_sent in sent.items():
            recs = {r["item_id"] for r in client.get(f"/users/{user}/recommendations", params={"k": 10}).json()["results"]}
            shown += len(items_sent & recs)
            missing += len(items_sent - set(client.get(f"/users/{user}").json()["seen"]))
    return {"not_reflected_in_next_recommendation": shown, "missing_from_profiles": missing}


def single_phase(base: str, items: list[str], args) -> dict:
    """Every client posts single events (one per request, 20 users per client); afterwards each
    user's next recommendation must exclude every item sent."""
    errors: list[str] = []
    posted = [0]
    lock = threading.Lock()
    sent: dict[str, set] = defaultdict(set)

    def worker(w: int) -> None:
        rnd = random.Random(500 + w)
        with httpx.Client(base_url=base, timeout=30) as client:
            for n in range(args.requests):
                user, item = f"single-{w}-{n % 20}", rnd.choice(items)
                response = client.post("/events", json={"user_id": user, "item_id": item, "ts": 1_700_000_000 + n})
                with lock:
                    if response.status_code != 200:
                        errors.append(response.text[:200])
                    else:
                        posted[0] += response.json()["recorded"] + response.json()["duplicate"]
                        sent[user].add(item)

    seconds = run_clients([worker] * args.clients)
    return {"seconds": round(seconds, 2), "events_posted_one_per_request": posted[0],
            "events_per_s_single": round(posted[0] / seconds, 1), **reflected(base, sent),
            "errors": len(errors), "first_errors": errors[:3]}


def batched_phase(base: str, items: list[str], args) -> dict:
    """Every client posts batches of 100 events (20 users per batch); afterwards each user's next
    recommendation must exclude every item sent."""
    errors: list[str] = []
    posted = [0]
    lock = threading.Lock()
    batches = max(1, args.requests // 10)
    sent: dict[str, set] = defaultdict(set)

    def worker(w: int) -> None:
        rnd = random.Random(1000 + w)
        with httpx.Client(base_url=base, timeout=120) as client:
            for b in range(batches):
                events = [
                    {"user_id": f"batch-{w}-{b}-{n % 20}", "item_id": rnd.choice(items), "ts": 1_700_000_000 + n}
                    for n in range(100)
                ]
                response = client.post("/events", json={"events": events})
                with lock:
                    if response.status_code != 200:
                        errors.append(response.text[:200])
                    else:
                        posted[0] += response.json()["recorded"] + response.json()["duplicate"]
                        for event in events:
                            sent[event["user_id"]].add(event["item_id"])

    seconds = run_clients([worker] * args.clients)
    return {"seconds": round(seconds, 2), "events_posted_in_batches": posted[0],
            "events_per_s_batched": round(posted[0] / seconds, 1), **reflected(base, sent),
            "errors": len(errors), "first_errors": errors[:3]}


if __name__ == "__main__":
    main()
