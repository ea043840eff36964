"""The command line, run in-process with Typer's runner (real model, real embedded store)."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from semrec.cli import app

runner = CliRunner()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEMREC_URL", raising=False)
    return tmp_path


def test_demo_prints_recommendations_before_and_after(in_tmp):
    result = runner.invoke(app, ["demo", "--store", "demo-store"])
    assert result.exit_code == 0, result.output
    assert "Indexed 256 items" in result.output
    assert "Recommendations for u001" in result.output and "after kitchen views" in result.output
    assert "el-0" in result.output and "ki-0" in result.output


def test_index_recommend_search_similar(in_tmp):
    catalog = in_tmp / "catalog.csv"
    pd.DataFrame(
        {
            "item_id": ["k1", "k2", "g1", "bad"],
            "name": ["Cast iron skillet", "Chef knife", "Garden spade", ""],
            "category": ["Kitchen > Cookware", "Kitchen > Knives", "Garden > Tools", "Garden"],
        }
    ).to_csv(catalog, index=False)
    result = runner.invoke(app, ["index", str(catalog), "--store", "s", "--quiet"])
    assert result.exit_code == 3, result.output  # partial: one row rejected
    rejects = [json.loads(line) for line in (in_tmp / "catalog.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["item_id"] == "bad" and rejects[0]["reason"] == "name is missing or empty"

    events = in_tmp / "events.csv"
    pd.DataFrame({"user_id": ["u"], "item_id": ["k1"]}).to_csv(events, index=False)
    assert runner.invoke(app, ["record", str(events), "--store", "s"]).exit_code == 0
    result = runner.invoke(app, ["fit", "--store", "s"])
    assert result.exit_code == 0, result.output
    assert "fitted collaborative vectors of 3 items from 1 users and 1 interactions" in result.output
    result = runner.invoke(app, ["recommend", "u", "--store", "s", "-k", "1"])
    assert result.exit_code == 0 and "k2" in result.output, result.output
    result = runner.invoke(app, ["search", "digging", "--store", "s", "-k", "1"])
    assert result.exit_code == 0 and "g1" in result.output
    result = runner.invoke(app, ["similar", "k1", "--store", "s", "--filter", '{"category": "Garden"}'])
    assert result.exit_code == 0 and "g1" in result.output and "k2" not in result.output


def test_cli_errors_are_one_line_with_exit_code_1(in_tmp):
    result = runner.invoke(app, ["index", "missing.csv", "--store", "s"])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["similar", "k1", "--store", "s", "--filter", "{bad"])
    assert result.exit_code == 2 and "is not JSON" in result.output


def test_reindex_takes_the_model_to_switch_to(in_tmp, encoder, monkeypatch):
    """`semrec reindex --model DIR` loads that model (e.g. a fine-tuned folder) for the new version."""
    asked = []
    monkeypatch.setattr("semrec.reindex.job.load_encoder", lambda model=None: asked.append(model) or encoder)
    pd.DataFrame({"item_id": ["k1", "k2"], "name": ["Cast iron skillet", "Garden spade"]}).to_csv("c.csv", index=False)
    result = runner.invoke(app, ["reindex", "c.csv", "--store", "s", "--model", "finetuned-minilm", "--quiet"])
    assert result.exit_code == 0, result.output
    assert asked == ["finetuned-minilm"]
    assert json.loads(result.output.strip().splitlines()[-1])["new"] == 2
