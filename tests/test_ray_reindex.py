"""The distributed (Ray Data) re-index on a local Ray cluster makes the same points as the
single-machine job on the same catalog (Parquet shards; qdrant-client local mode as the server)."""

import numpy as np
import pytest
from qdrant_client import QdrantClient

from conftest import need_extra
from semrec.reindex import reindex
from semrec.store import QdrantStore

ray = need_extra("distributed", "ray")[0]




@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _points(client):
    store = QdrantStore("x", client=client)
    return {h.id: h for h in store.scroll("items", with_vectors=True)}


def test_ray_job_makes_the_same_points_as_the_single_machine_job(local_ray, tmp_path, catalog, encoder):
    from semrec.reindex import ray_reindex

    shards = tmp_path / "catalog"
    shards.mkdir()
    part = catalog.head(90)
    for n, start in enumerate(range(0, len(part), 30)):
        part.iloc[start : start + 30].to_parquet(shards / f"part-{n}.parquet", index=False)

    single = QdrantClient(path=str(tmp_path / "single"))
    one = reindex(shards, "single", client=single, encoder=encoder, state_dir=tmp_path / "state-single", batch_size=32)
    distributed = QdrantClient(path=str(tmp_path / "ray"))
    many = ray_reindex(shards, "ray", client=distributed, state_dir=tmp_path / "state-ray", batch_size=32, actors=1,
                       backend="torch")  # the same backend as the single-machine job's encoder

    assert one.items == many.items == 90 and many.switched and many.version == "v0001"
    a, b = _points(single), _points(distributed)
    assert a.keys() == b.keys() and len(a) == 90
    for pid, hit in a.items():
        assert b[pid].payload == hit.payload
        np.testing.assert_allclose(b[pid].vector, hit.vector, atol=1e-4)
    # the state file lets the next (single-machine) run be incremental: nothing to encode
    again = reindex(shards, "ray", client=distributed, encoder=encoder, state_dir=tmp_path / "state-ray")
    assert again.encoded == 0 and again.unchanged == 90 and not again.blue_green
