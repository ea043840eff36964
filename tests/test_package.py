"""The package's public API: every name in `semrec.__all__` resolves, and importing the light
parts (the encoders, used by tokenising worker processes) loads no store or Qdrant client."""

from __future__ import annotations

import subprocess
import sys

import pytest

import semrec


def test_every_public_name_resolves_to_its_object():
    assert set(semrec.__all__) == set(semrec._MODULE_OF)
    for name in semrec.__all__:
        obj = getattr(semrec, name)
        assert obj.__name__ == name and obj.__module__.startswith(semrec._MODULE_OF[name])
    assert set(semrec.__all__) <= set(dir(semrec))
    from semrec import Recommender
    from semrec.recommender import Recommender as Defined

    assert Recommender is Defined
    with pytest.raises(AttributeError, match="no attribute 'Recomender'"):
        semrec.Recomender  # noqa: B018


def test_encoders_import_without_the_store_stack():
    code = (
        "import sys, semrec, semrec.encoders.gpu_backend; "
        "print([m for m in ('qdrant_edge', 'qdrant_client', 'pydantic', 'pandas', 'torch') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
