"""The command line, run in-process with Typer's runner (real model, loaded once; real embedded
stores), and through its real entry points where stdout, stderr and the exit status of the
process itself are what is checked.

No wall-clock constants: every time bound is a ratio to something measured in the same run
(the model's load time, a refused connection)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from semrec import cli
from semrec.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
LONG_NAME = "Cast iron skillet, pre-seasoned, 26 cm, with a helper handle and a pouring lip on both sides"


@pytest.fixture(scope="session")
def model_load_s() -> float:
    """The model's load time through the command line's own loader (then kept for the session,
    so every command below reuses it)."""
    cli._load_encoder.cache_clear()
    started = time.perf_counter()
    with cli._model_loading():
        cli._load_encoder(None, None)
    return time.perf_counter() - started


@pytest.fixture
def in_tmp(tmp_path, monkeypatch, model_load_s):
    monkeypatch.chdir(tmp_path)
    for name in ("SEMREC_URL", "SEMREC_STORE", "SEMREC_TIMEOUT", "SEMREC_MODEL", "SEMREC_DEVICE", "SEMREC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def error_line(result) -> str:
    """The one line a failed command writes to stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def write_catalog(folder: Path) -> Path:
    path = folder / "catalog.csv"
    pd.DataFrame(
        {
            "item_id": ["k1", "k2", "g1", "bad"],
            "name": [LONG_NAME, "Chef knife", "Garden spade", ""],
            "category": ["Kitchen > Cookware", "Kitchen > Knives", "Garden > Tools", "Garden"],
            "price": [30.0, 50.0, 20.0, 1.0],
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def shop(in_tmp):
    """Store "s": the catalog indexed (one row rejected), user "u" has viewed k1."""
    catalog = write_catalog(in_tmp)
    assert invoke("index", catalog, "--store", "s", "--quiet").exit_code == EXIT_PARTIAL
    pd.DataFrame({"user_id": ["u", "w"], "item_id": ["k1", "g1"]}).to_csv(in_tmp / "events.csv", index=False)
    assert invoke("record", "events.csv", "--store", "s").exit_code == EXIT_OK
    return in_tmp


def test_help_renders_every_word_and_version():
    result = invoke("record", "--help")
    assert result.exit_code == 0 and "user_id, item_id, [kind], [ts], [weight]" in " ".join(result.stdout.split())
    assert "--on-unknown-item" in result.stdout and "--verbose" in result.stdout
    for command in ("recommend", "search", "similar", "index", "record", "fit", "export", "demo"):
        assert "table|json|jsonl|csv" in invoke(command, "--help").stdout, command
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"semrec {cli.__version__}"


def test_readme_lists_the_exit_codes_every_command_shares():
    section = (ROOT / "README.md").read_text().split("## CLI", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d) \| (.+) \|$", section, re.MULTILINE))
    assert {int(code): text for code, text in rows.items()} == cli.EXIT_CODES
    assert "--format table|json|jsonl|csv" in section


def test_index_record_fit_and_queries_print_parseable_output(in_tmp):
    catalog = write_catalog(in_tmp)
    result = invoke("index", catalog, "--store", "s", "--quiet")
    assert result.exit_code == EXIT_PARTIAL, result.output  # one row rejected
    summary = json.loads(result.stdout)  # JSON by default: stdout is not a terminal
    assert summary == {"store": "s", "indexed": 3, "rejected": 1, "rejects_path": str(in_tmp / "catalog.rejects.jsonl")}
    assert "error" not in result.stderr
    rejects = [json.loads(line) for line in (in_tmp / "catalog.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["item_id"] == "bad" and rejects[0]["reason"] == "name is missing or empty"
    # the next run may replace its own earlier rejects file
    assert invoke("index", catalog, "--store", "s", "--quiet").exit_code == EXIT_PARTIAL

    pd.DataFrame({"user_id": ["u", "w"], "item_id": ["k1", "g1"]}).to_csv("events.csv", index=False)
    result = invoke("record", "events.csv", "--store", "s")
    assert result.exit_code == EXIT_OK and json.loads(result.stdout)["events"] == 2
    result = invoke("fit", "--store", "s", "--format", "jsonl")
    assert result.exit_code == EXIT_OK, result.output
    fitted = json.loads(result.stdout)
    assert (fitted["items"], fitted["users"], fitted["interactions"]) == (3, 2, 2)

    rows = json.loads(invoke("recommend", "u", "--store", "s", "-k", "2").stdout)
    assert [r["rank"] for r in rows] == [1, 2] and "k1" not in {r["item_id"] for r in rows}  # seen items left out
    assert set(rows[0]) == {"rank", "item_id", "score", "name", "category", "tags", "reason"}
    lines = invoke("search", "digging", "--store", "s", "-k", "1", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["item_id"] for line in lines] == ["g1"]
    result = invoke("similar", "k1", "--store", "s", "--filter", '{"category": "Garden", "price": {"lt": 40}}', "--format", "csv")
    frame = pd.read_csv(__import__("io").StringIO(result.stdout))
    assert result.exit_code == 0 and list(frame["item_id"]) == ["g1"] and list(frame.columns)[:2] == ["rank", "item_id"]

    # a table, forced into a pipe, is never wrapped: each row stays on one line
    result = invoke("search", "skillet", "--store", "s", "-k", "1", "--format", "table")
    assert result.exit_code == 0 and any(LONG_NAME in line and "k1" in line for line in result.stdout.splitlines())


def test_export_writes_every_users_top_k(shop):
    result = invoke("export", "top.parquet", "--store", "s", "-k", "2")
    assert result.exit_code == EXIT_OK, result.output
    summary = json.loads(result.stdout)
    assert (summary["users"], summary["rows"], summary["format"]) == (2, 4, "parquet")
    frame = pd.read_parquet("top.parquet")
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score", "name", "category", "tags", "reason"]
    assert sorted(frame["user_id"].unique()) == ["u", "w"] and set(frame["rank"]) == {1, 2}
    assert "k1" not in set(frame.loc[frame["user_id"] == "u", "item_id"])

    result = invoke("export", "top.parquet", "--store", "s")
    assert result.exit_code == EXIT_USAGE and "--overwrite" in error_line(result)
    result = invoke("export", "top.csv", "--store", "s", "-k", "1", "--format", "table")
    assert result.exit_code == EXIT_OK and "wrote 2 recommendations for 2 users" in result.stdout
    assert len(pd.read_csv("top.csv")) == 2


def test_failures_exit_1_with_one_line_that_names_the_cli_option(shop):
    pd.DataFrame({"user_id": ["u", "u"], "item_id": ["k2", "nope"]}).to_csv("more.csv", index=False)
    result = invoke("record", "more.csv", "--store", "s")
    assert result.exit_code == EXIT_FAILED and result.stdout == ""
    line = error_line(result)
    assert "--on-unknown-item skip" in line and "on_unknown_item=" not in line and "index_items()" not in line
    result = invoke("record", "more.csv", "--store", "s", "--on-unknown-item", "skip")
    assert result.exit_code == EXIT_OK and json.loads(result.stdout)["skipped_unknown_items"] == 1

    result = invoke("similar", "nope", "--store", "s")
    assert result.exit_code == EXIT_FAILED and "semrec index CATALOG" in error_line(result)
    # a filter value of the wrong type for what the store holds
    result = invoke("recommend", "u", "--store", "s", "--filter", '{"price": "cheap"}')
    assert result.exit_code == EXIT_USAGE and "'price' holds numbers" in error_line(result)
    result = invoke("recommend", "u", "--store", "s", "--filter", '{"brand": "Acme"}')
    line = error_line(result)
    assert result.exit_code == EXIT_USAGE and "Filterable fields: category, price, tags." in line
    assert "popularity" not in line and "cf_interactions" not in line


def test_reindex_reads_the_environment_and_ends_every_run_with_json(in_tmp, monkeypatch):
    """`semrec reindex --model DIR` loads that model; SEMREC_STORE names the store; every exit,
    usage errors and unexpected failures included, ends with a JSON line on stdout."""
    asked = []
    encoder = cli._load_encoder(None, None)
    monkeypatch.setattr("semrec.reindex.job.load_encoder", lambda model=None: asked.append(model) or encoder)
    monkeypatch.setenv("SEMREC_STORE", "env-store")
    pd.DataFrame({"item_id": ["k1", "k2"], "name": ["Cast iron skillet", "Garden spade"]}).to_csv("c.csv", index=False)
    result = invoke("reindex", "c.csv", "--model", "finetuned-minilm", "--quiet")
    assert result.exit_code == EXIT_OK, result.output
    assert asked == ["finetuned-minilm"]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["new"] == 2 and summary["store"] == "env-store" and (in_tmp / "env-store" / "CURRENT").exists()

    result = invoke("reindex", "c.csv", "--full", "--append")
    assert result.exit_code == EXIT_USAGE and json.loads(result.stdout.splitlines()[-1])["exit_code"] == EXIT_USAGE
    error_line(result)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("semrec.reindex.reindex", broken)
    result = invoke("reindex", "c.csv")
    assert result.exit_code == EXIT_FAILED
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "error": "unexpected RuntimeError: disk on fire (run with --verbose for the traceback)",
        "exit_code": EXIT_FAILED, "store": "env-store",
    }
    assert "Traceback" not in result.stderr and "disk on fire" in error_line(result)
    result = invoke("reindex", "c.csv", "--verbose")
    assert result.exit_code == EXIT_FAILED and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unexpected RuntimeError")


def test_demo_never_deletes_a_folder_it_did_not_create(in_tmp):
    (in_tmp / "p").mkdir()
    (in_tmp / "p" / "notes.txt").write_text("x\n")
    result = invoke("demo", "--store", "p")
    assert result.exit_code == EXIT_USAGE and "--store NEW_DIR" in error_line(result)
    assert [f.name for f in (in_tmp / "p").iterdir()] == ["notes.txt"]
    assert (in_tmp / "p" / "notes.txt").read_text() == "x\n"

    result = invoke("demo", "--store", "demo-store")
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 256 and report["views"] == ["ki-001", "ki-014", "ki-032", "ki-012"]
    assert any(r["item_id"].startswith("el-") for r in report["before"])
    assert sum(r["item_id"].startswith("ki-") for r in report["after"]) > sum(r["item_id"].startswith("ki-") for r in report["before"])
    assert (in_tmp / "demo-store" / ".semrec-demo").exists()


def test_demo_store_marker_decides_what_may_be_emptied(tmp_path):
    from semrec.demo import DEMO_MARKER, prepare_demo_store

    made = prepare_demo_store(tmp_path / "d")
    (made / "old-shard").write_text("left by an earlier demo")
    assert prepare_demo_store(made, fresh=False) == made and (made / "old-shard").exists()
    prepare_demo_store(made)  # --fresh: the demo's own folder is emptied
    assert sorted(f.name for f in made.iterdir()) == [DEMO_MARKER]
    (tmp_path / "empty").mkdir()
    assert (prepare_demo_store(tmp_path / "empty") / DEMO_MARKER).exists()


def test_every_usage_error_is_one_line_on_stderr_before_the_model_loads(in_tmp, monkeypatch, model_load_s):
    """Each trap of issue 17: exit 2, nothing on stdout (reindex: a JSON line), one line on
    stderr, no model loaded, no store opened or created, user files intact; and each answers
    in a small fraction of the model's load time, measured in this run."""
    catalog = write_catalog(in_tmp)
    (in_tmp / "p").mkdir()
    (in_tmp / "p" / "notes.txt").write_text("x\n")
    (in_tmp / "mine.jsonl").write_text("my own data\n")

    def refuse(*args, **kwargs):
        raise AssertionError("the model or the store was opened before the options were checked")

    monkeypatch.setattr(cli, "_load_encoder", refuse)
    monkeypatch.setattr("semrec.store.open_store", refuse)
    cases = [
        (["index", "nope.csv", "--store", "s"], "'nope.csv' does not exist"),
        (["reindex", "nope.csv", "--store", "s"], "'nope.csv' does not exist"),
        (["record", "nope.csv", "--store", "s"], "'nope.csv' does not exist"),
        (["recommend", "alice", "--store", "doesnotexist"], "nothing was created"),
        (["search", "mugs", "--store", "doesnotexist"], "nothing was created"),
        (["similar", "k1", "--store", "doesnotexist"], "nothing was created"),
        (["fit", "--store", "doesnotexist"], "nothing was created"),
        (["export", "out.parquet", "--store", "doesnotexist"], "nothing was created"),
        (["recommend", "alice", "--url", "localhost:6333"], "write it as http://localhost:6333"),
        (["recommend", "alice", "--store", "localhost:6333"], "pass --url http://localhost:6333"),
        (["recommend", "alice", "--url", "ftp://host"], "not an http(s) URL"),
        (["recommend", "alice", "--store", "s", "--url", "http://h:6333"], "not both"),
        (["similar", "k1", "--filter", "{bad"], "is not JSON"),
        (["similar", "k1", "--filter", '{"price": {"lt": "cheap"}}'], "expected a finite number or an ISO date"),
        (["similar", "k1", "--filter", '{"price": {"below": 5}}'], "range keys"),
        (["recommend", "alice", "-k", "0"], "--k"),
        (["recommend", "alice", "--format", "xml"], "--format"),
        (["search", "  "], "is empty"),
        (["demo", "--store", "p"], "did not create"),
        (["index", catalog, "--rejects", "mine.jsonl"], "already exists"),
        (["export", "out.txt"], "expected one of .parquet, .csv, .jsonl"),
        (["record", "events.csv", "--on-unknown-item", "ignore"], "--on-unknown-item"),
        (["evaluate", "--catalog", "nope.csv"], "--events"),
        (["nosuchcommand"], "No such command"),
    ]
    env_cases = [
        ({"SEMREC_URL": "localhost:6333"}, ["recommend", "alice"], "SEMREC_URL 'localhost:6333' has no scheme"),
        ({"SEMREC_TIMEOUT": "soon"}, ["recommend", "alice", "--url", "http://h:6333"], "SEMREC_TIMEOUT"),
    ]
    times = []
    for args, expected, env in [(a, e, {}) for a, e in cases] + [(a, e, env) for env, a, e in env_cases]:
        started = time.perf_counter()
        result = invoke(*args, env=env)
        times.append(time.perf_counter() - started)
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert expected in error_line(result), (args, result.stderr)
        if args[0] == "reindex":
            assert json.loads(result.stdout)["exit_code"] == EXIT_USAGE
        else:
            assert result.stdout == "", args
    assert not (in_tmp / "doesnotexist").exists() and not (in_tmp / "localhost:6333").exists()
    assert not (in_tmp / "s").exists()
    assert [f.name for f in (in_tmp / "p").iterdir()] == ["notes.txt"]
    assert (in_tmp / "mine.jsonl").read_text() == "my own data\n"
    assert max(times) < 0.2 * model_load_s, (max(times), model_load_s)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_that_does_not_answer_fails_fast_naming_the_url(in_tmp, monkeypatch, model_load_s):
    monkeypatch.setattr(cli, "_load_encoder", lambda *a: pytest.fail("the model loaded before the server was checked"))
    refused = f"http://127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    result = invoke("recommend", "alice", "--url", refused)
    baseline = time.perf_counter() - started  # the command's own cost around one refused connection
    assert result.exit_code == EXIT_FAILED and refused in error_line(result) and "Connection refused" in result.stderr

    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        timeout = 20 * baseline
        started = time.perf_counter()
        result = invoke("recommend", "alice", "--url", url, "--timeout", f"{timeout:.3f}")
        elapsed = time.perf_counter() - started
        assert result.exit_code == EXIT_FAILED and result.stdout == ""
        line = error_line(result)
        assert url in line and "did not answer within" in line and "--timeout" in line
        assert 0.9 * timeout <= elapsed < 2 * timeout + 5 * baseline, (elapsed, timeout, baseline)
        assert elapsed < model_load_s

        # reindex waits at most $SEMREC_TIMEOUT for the first answer, and says so in JSON too
        write_catalog(in_tmp)
        started = time.perf_counter()
        result = invoke("reindex", "catalog.csv", "--url", url, env={"SEMREC_TIMEOUT": f"{timeout:.3f}"})
        elapsed = time.perf_counter() - started
    assert result.exit_code == EXIT_FAILED and url in json.loads(result.stdout.splitlines()[-1])["error"]
    assert elapsed < 2 * timeout + 5 * baseline, (elapsed, timeout, baseline)


def test_model_loading_is_silent_unless_verbose():
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    with cli._model_loading():
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    assert hf_logging.is_progress_bar_enabled() == before


def test_real_entry_points_write_errors_to_stderr_and_exit_2(tmp_path):
    """The installed `semrec` and `python -m indexing.reindex` processes themselves."""
    semrec = Path(sys.executable).with_name("semrec")
    env = {"PATH": str(semrec.parent), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    result = subprocess.run([str(semrec), "index", "nope.csv"], capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert result.returncode == EXIT_USAGE and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["error: CATALOG 'nope.csv' does not exist; check the path."]
    result = subprocess.run([sys.executable, "-m", "indexing.reindex", "nope.csv"], capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert result.returncode == EXIT_USAGE and len(result.stderr.strip().splitlines()) == 1
    assert json.loads(result.stdout.strip().splitlines()[-1])["exit_code"] == EXIT_USAGE
    assert not (tmp_path / "semrec-store").exists()


def test_serve_refuses_what_it_cannot_honour_before_loading_anything(in_tmp, monkeypatch):
    monkeypatch.setattr(cli, "_load_encoder", lambda *a: pytest.fail("the model loaded before the options were checked"))
    several = invoke("serve", "--store", "s", "--workers", "2")
    assert several.exit_code == EXIT_USAGE
    assert re.search(r"--workers 2 needs a Qdrant server: an embedded store .* one process only", error_line(several))


def test_the_ray_variant_is_the_same_command_and_refuses_what_it_cannot_do(in_tmp, monkeypatch):
    from indexing import ray_reindex

    monkeypatch.setattr(cli, "_load_encoder", lambda *a: pytest.fail("the model loaded before the options were checked"))
    pd.DataFrame({"item_id": ["a"], "name": ["A thing"]}).to_parquet("shards.parquet")
    embedded = invoke("reindex", "shards.parquet", "--store", "s", "--ray")
    assert embedded.exit_code == EXIT_USAGE
    assert "--ray writes to a Qdrant server, not an embedded store" in error_line(embedded)
    assert json.loads(embedded.stdout.strip().splitlines()[-1])["exit_code"] == EXIT_USAGE  # the JSON last line
    append = invoke("reindex", "shards.parquet", "--url", "http://127.0.0.1:1", "--ray", "--append")
    assert append.exit_code == EXIT_USAGE and "--ray always builds a new version" in error_line(append)
    alone = invoke("reindex", "shards.parquet", "--store", "s", "--actors", "2")
    assert alone.exit_code == EXIT_USAGE and "--actors, --ray-address and --num-cpus go with --ray" in error_line(alone)
    assert ray_reindex.main(["shards.parquet", "--store", "s"]) == EXIT_USAGE  # the same command, with --ray
