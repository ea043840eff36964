"""Every notebook runs top to bottom on small data (the shipped sample catalog); a failing cell fails."""

from pathlib import Path

import pytest

from conftest import need_extra

# running them needs the kernel and matplotlib too
nbformat, nbclient = need_extra("notebooks", "nbformat", "nbclient", "ipykernel", "matplotlib")[:2]

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _execute(path: Path):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return notebook


def _outputs(notebook, kind):
    return [o["data"][kind] for c in notebook.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if kind in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_committed_copy_has_no_stale_outputs(path):
    committed = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code"), "strip outputs before committing"
    executed = _execute(path)
    assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    if path.name == "explore.ipynb":
        assert len(_outputs(executed, "image/png")) == 2  # the projection, before and after the burst
        tables = "\n".join(_outputs(executed, "text/html"))
        assert "before" in tables and "after" in tables and "Kitchen" in tables
    if path.name == "evaluate.ipynb":
        assert len(_outputs(executed, "image/png")) == 1  # the R@10 / NDCG@10 bars
        tables = "\n".join(_outputs(executed, "text/html"))
        assert "ALS" in tables and "semrec (default)" in tables
    if path.name == "finetune.ipynb":
        assert len(_outputs(executed, "image/png")) == 1  # loss curve and validation NDCG@10
        tables = "\n".join(_outputs(executed, "text/html"))
        assert "before" in tables and "after" in tables and "ndcg@10" in tables
