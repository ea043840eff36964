"""Group commit: concurrent requests share rounds, each caller gets its own result or error."""

from __future__ import annotations

import threading
import time

import pytest

from semrec.group_commit import GroupCommit


def test_lone_caller_is_applied_at_once():
    commits = GroupCommit(lambda requests: [r * 2 for r in requests])
    assert commits.submit(21) == 42
    assert (commits.rounds, commits.requests) == (1, 1)


def test_callers_arriving_during_a_round_share_the_next_one():
    gate = threading.Event()
    rounds: list[list[int]] = []

    def apply(requests):
        rounds.append(list(requests))
        if requests == [0]:
            gate.wait(10)  # the first round is held until the others have queued
        return [r + 100 for r in requests]

    commits = GroupCommit(apply)
    results: dict[int, int] = {}
    first = threading.Thread(target=lambda: results.__setitem__(0, commits.submit(0)))
    first.start()
    while not rounds:
        time.sleep(0.001)
    others = [threading.Thread(target=lambda n=n: results.__setitem__(n, commits.submit(n))) for n in range(1, 6)]
    for thread in others:
        thread.start()
    while commits.queued < 5:
        time.sleep(0.001)
    gate.set()
    for thread in [first, *others]:
        thread.join(10)
    assert results == {n: n + 100 for n in range(6)}
    assert rounds[0] == [0] and sorted(rounds[1]) == [1, 2, 3, 4, 5] and len(rounds) == 2


def test_a_failing_request_fails_alone():
    def apply(requests):
        if "bad" in requests:
            raise ValueError("bad request")
        return [r.upper() for r in requests]

    commits = GroupCommit(apply)
    gate = threading.Event()
    original = commits.apply

    def held(requests):
        if requests == ["first"]:
            gate.wait(10)
        return original(requests)

    commits.apply = held
    results: dict[str, object] = {}

    def call(r):
        try:
            results[r] = commits.submit(r)
        except ValueError as exc:
            results[r] = exc

    first = threading.Thread(target=call, args=("first",))
    first.start()
    while not commits.busy:
        time.sleep(0.001)
    rest = [threading.Thread(target=call, args=(r,)) for r in ("a", "bad", "b")]
    for thread in rest:
        thread.start()
    while commits.queued < 3:
        time.sleep(0.001)
    gate.set()
    for thread in [first, *rest]:
        thread.join(10)
    assert results["first"] == "FIRST" and results["a"] == "A" and results["b"] == "B"
    assert isinstance(results["bad"], ValueError)


def test_an_exception_returned_as_a_result_is_raised_to_its_caller():
    commits = GroupCommit(lambda requests: [KeyError(r) for r in requests])
    with pytest.raises(KeyError, match="x"):
        commits.submit("x")


def test_a_call_from_inside_apply_does_not_wait_for_itself():
    commits: GroupCommit = GroupCommit(lambda requests: [commits.submit(-r) if r > 0 else r for r in requests])
    assert commits.submit(3) == -3


def test_rounds_are_capped_by_size():
    gate = threading.Event()
    rounds: list[list[int]] = []

    def apply(requests):
        rounds.append(list(requests))
        if requests == [1]:
            gate.wait(10)
        return requests

    commits = GroupCommit(apply, max_batch=5, size=lambda r: r)
    threads = [threading.Thread(target=commits.submit, args=(1,))]
    threads[0].start()
    while not rounds:
        time.sleep(0.001)
    for size in (3, 2, 4):
        threads.append(threading.Thread(target=commits.submit, args=(size,)))
        threads[-1].start()
        while commits.queued < len(threads) - 1:
            time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert rounds == [[1], [3, 2], [4]]


def test_a_caller_never_applies_a_round_without_its_own_request():
    """Under a steady stream of callers, each round is applied by a caller whose request is in it:
    nobody is kept leading rounds for others while its own answer waits."""
    rounds: list[tuple[str, list[tuple[str, int]]]] = []

    def apply(requests):
        rounds.append((threading.current_thread().name, list(requests)))
        time.sleep(0.002)  # a round takes a while: others queue meanwhile
        return [n for _, n in requests]

    commits = GroupCommit(apply)
    answers: dict[str, list[int]] = {}

    def caller() -> None:
        me = threading.current_thread().name
        answers[me] = [commits.submit((me, n)) for n in range(50)]

    threads = [threading.Thread(target=caller, name=f"caller-{w}") for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(got == list(range(50)) for got in answers.values()) and len(answers) == 8
    assert sum(len(requests) for _, requests in rounds) == 400
    assert all(any(owner == leader for owner, _ in requests) for leader, requests in rounds)
