"""docker/ cannot run here (no Docker engine); check what can be checked: the files are valid and agree."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def test_compose_file_runs_semrec_against_a_qdrant_server():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:v")
    assert "6333:6333" in services["qdrant"]["ports"]
    assert services["semrec"]["environment"]["SEMREC_URL"] == "http://qdrant:6333"
    assert services["semrec"]["build"]["dockerfile"] == "docker/Dockerfile"


def test_dockerfile_installs_cpu_torch_pinned_like_the_project():
    text = (DOCKER / "Dockerfile").read_text()
    assert '"torch==2.13.0"' in text and "whl/cpu" in text
    assert 'ENTRYPOINT ["semrec"]' in text
