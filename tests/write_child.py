"""A writer in a child process, to be killed with SIGKILL at a random moment:
`python tests/write_child.py STORE OP SEED` with OP one of record, record_many, forget, fit.

It prints one JSON line before each operation ({"start": ...}) and one after it returned
({"ack": ...}), flushing each, so the parent knows what was acknowledged and what was in flight."""

from __future__ import annotations

import json
import random
import sys

import pandas as pd

USERS = 8


def say(kind: str, op: dict) -> None:
    sys.stdout.write(json.dumps({kind: op}) + "\n")
    sys.stdout.flush()


def main(store: str, op: str, seed: int) -> None:
    from semrec import Recommender, load_encoder
    from semrec.demo import sample_catalog

    items = list(sample_catalog().item_id)
    rec = Recommender.open(store, encoder=load_encoder(backend="torch"))
    rnd = random.Random(seed)
    ts = 1_700_000_000 + seed * 100_000
    say("ready", {})
    for n in range(10_000):
        ts += 1
        if op == "record":
            event = {"user_id": f"u{rnd.randrange(USERS)}", "item_id": rnd.choice(items), "ts": ts}
            batch = [event]
            say("start", {"events": batch})
            rec.record(event["user_id"], event["item_id"], ts=ts)
            say("ack", {"events": batch})
        elif op == "record_many":
            batch = [
                {"user_id": f"u{rnd.randrange(USERS)}", "item_id": rnd.choice(items), "ts": ts + k / 100}
                for k in range(30)
            ]
            say("start", {"events": batch})
            rec.record_many(pd.DataFrame(batch))
            say("ack", {"events": batch})
        elif op == "forget":
            uid = f"f{seed}-{n}"
            batch = [{"user_id": uid, "item_id": rnd.choice(items), "ts": ts + k / 100} for k in range(3)]
            say("start", {"events": batch})
            rec.record_many(pd.DataFrame(batch))
            say("ack", {"events": batch})
            say("start", {"forget": uid})
            rec.forget_user(uid)
            say("ack", {"forget": uid})
        elif op == "fit":
            batch = [{"user_id": f"u{rnd.randrange(USERS)}", "item_id": rnd.choice(items), "ts": ts + k / 100} for k in range(5)]
            say("start", {"events": batch})
            rec.record_many(pd.DataFrame(batch))
            say("ack", {"events": batch})
            say("start", {"fit": n})
            rec.fit_collaborative()
            say("ack", {"fit": n})
        else:
            raise SystemExit(f"unknown op {op!r}")


def crash_trial(base, workdir, op: str, seed: int, delay: float) -> dict:
    """Copy the store `base` to `workdir`, run a child doing `op`, kill it `delay` seconds after
    it is ready, reopen the store and check it. Returns what was acknowledged and lost."""
    import os
    import shutil
    import signal
    import subprocess
    import time
    from pathlib import Path

    store = Path(workdir) / f"{op}-{seed}"
    shutil.copytree(base, store)
    errors = store.with_suffix(".stderr")
    with open(errors, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, __file__, str(store), op, str(seed)], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    first = child.stdout.readline()
    if not first.startswith('{"ready"'):
        child.kill()
        raise RuntimeError(f"the writer child did not start: {first!r} {errors.read_text()[-2000:]}")
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    lines = [json.loads(line) for line in child.stdout.read().splitlines() if line.strip()]
    return {"store": store, "lines": lines}


def check_after_crash(rec, lines: list[dict]) -> dict:
    """What an acknowledged write promised, checked on the reopened store: every acknowledged
    event present, acknowledged erasures gone, the write in flight all or none, no duplicates,
    no zero vectors, popularity = users who have seen each item."""
    import numpy as np

    from semrec.profiles import event_key
    from semrec.schema import unpack_user

    acked = [line["ack"] for line in lines if "ack" in line]
    started = [line["start"] for line in lines if "start" in line]
    in_flight = started[-1] if len(started) > len(acked) else None
    forgotten = {a["forget"] for a in acked if "forget" in a}
    report = {"acked_writes": len(acked), "lost_events": 0, "resurrected_users": 0, "partial_batches": 0,
              "duplicates": 0, "zero_vectors": 0, "wrong_popularity": 0}
    keys_of: dict[str, set] = {}

    def keys(uid):
        if uid not in keys_of:
            profile = rec.profile(uid)
            keys_of[uid] = set(profile.event_keys) if profile else set()
        return keys_of[uid]

    erasing = {in_flight["forget"]} if in_flight and "forget" in in_flight else set()  # may have finished
    for ack in acked:
        for e in ack.get("events", []):
            if e["user_id"] in forgotten | erasing:
                continue
            if event_key(e["item_id"], "view", e["ts"]) not in keys(e["user_id"]):
                report["lost_events"] += 1
    report["resurrected_users"] = sum(rec.profile(u) is not None for u in forgotten)
    if in_flight and "events" in in_flight:
        present = [event_key(e["item_id"], "view", e["ts"]) in keys(e["user_id"]) for e in in_flight["events"]]
        report["partial_batches"] = int(any(present) and not all(present))
    seen = {}
    for hit in rec.store.scroll("users", with_vectors=True):
        p = unpack_user(hit.payload)
        report["duplicates"] += (len(p["event_keys"]) - len(set(p["event_keys"]))) + (len(p["seen"]) - len(set(p["seen"])))
        report["zero_vectors"] += int(np.linalg.norm(hit.vector) < 1e-6)
        for item in p["seen"]:
            seen[item] = seen.get(item, 0) + 1
    for hit in rec.store.scroll("items", with_vectors=True):
        report["zero_vectors"] += int(np.linalg.norm(hit.vector) < 1e-6)
        report["wrong_popularity"] += int(hit.payload.get("popularity", 0.0) != seen.get(hit.payload["item_id"], 0))
    return report


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
