"""docker/ cannot run here (no Docker engine); check what can be checked: the files parse, agree
with each other, and every semrec command they run exists with the options they pass."""

import re
from pathlib import Path

import typer.main
import yaml

from semrec.cli import app

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def semrec_command(argv: list[str]):
    """The click command semrec would run for `argv` and the options it declares."""
    group = typer.main.get_command(app)
    command = group.commands[argv[0]]
    options = {opt for param in command.params for opt in param.opts}
    return command, options


def check_argv(argv: list[str]) -> None:
    command, options = semrec_command(argv)
    given = [a for a in argv[1:] if a.startswith("--")]
    assert set(given) <= options, f"{argv[0]}: unknown options {set(given) - options}"
    ctx = command.make_context("semrec " + argv[0], list(argv[1:]), resilient_parsing=False)
    assert ctx.params  # parsed: every option took a value of its type


def test_compose_file_runs_the_service_against_a_qdrant_server():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    qdrant, semrec, job = services["qdrant"], services["semrec"], services["reindex"]
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", qdrant["image"])
    assert "QDRANT__SERVICE__API_KEY" in qdrant["environment"]
    assert "qdrant-storage:/qdrant/storage" in qdrant["volumes"] and "qdrant-storage" in compose["volumes"]
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert semrec["command"][0] == "serve" and "http://qdrant:6333" in semrec["command"]
    assert semrec["environment"]["SEMREC_QDRANT_API_KEY"] == qdrant["environment"]["QDRANT__SERVICE__API_KEY"]
    assert "/readyz" in " ".join(semrec["healthcheck"]["test"])
    assert semrec["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert job["profiles"] == ["jobs"] and job["image"] == semrec["image"] and job["build"] == semrec["build"]
    for service in (semrec, job):
        check_argv(service["command"])
    assert semrec["build"]["dockerfile"] == "docker/Dockerfile"


def test_dockerfile_runs_serve_as_non_root_with_pinned_parts():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+$", text, re.M), "base image pinned to a patch release"
    assert '"torch==2.13.0"' in text and "whl/cpu" in text
    assert re.search(r"pip install \"\.\[[^\]]*fast[^\]]*serve[^\]]*\]\"", text)
    assert re.search(r"^USER semrec$", text, re.M) and "useradd" in text
    assert 'ENTRYPOINT ["semrec"]' in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    check_argv(yaml.safe_load(cmd))
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {"**/.venv", "**/__pycache__", ".git", "semrec-store"} <= set(ignore)
