"""Crash safety of the write path: a real child process recording events, erasing users or
fitting is killed with SIGKILL at a random moment; the reopened store must hold every
acknowledged write, the write in flight whole or not at all, no duplicates, no zero vectors, and
popularity equal to the users who have seen each item (interrupted writes are repaired on open).
`benchmarks/crash.py` runs the same trials many times."""

from __future__ import annotations

import random

import pytest

from semrec import Recommender
from write_child import check_after_crash, crash_trial


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, shared_encoder, catalog):
    path = tmp_path_factory.mktemp("crash-base") / "store"
    with Recommender.open(path, encoder=shared_encoder) as rec:
        rec.index_items(catalog)
        rec.record("u0", "el-001", ts=1)
    return path


@pytest.mark.parametrize("op", ["record", "record_many", "forget", "fit"])
def test_kill_during_writes(op, base_store, tmp_path, shared_encoder):
    rnd = random.Random(op)
    for trial in range(1):  # benchmarks/crash.py runs 20+ per operation
        result = crash_trial(base_store, tmp_path, op, trial, delay=rnd.uniform(0.3, 3.0))
        with Recommender.open(result["store"], encoder=shared_encoder) as rec:
            report = check_after_crash(rec, result["lines"])
        assert report["acked_writes"] > 0, "the child was killed before its first write; raise the delay"
        assert {k: v for k, v in report.items() if k != "acked_writes"} == dict.fromkeys(
            ["lost_events", "resurrected_users", "partial_batches", "duplicates", "zero_vectors", "wrong_popularity"], 0
        ), report
