"""`need_extra`, the one way a test asks for an optional extra: it skips only when the extra is
not installed; an installed extra whose test cannot run fails."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import extra_installed, need_extra


@pytest.fixture
def fake_modules(tmp_path, monkeypatch):
    """Importable top-level modules made here: `fine_mod` imports, `broken_mod` is installed but
    raises on import (as a package whose shared library is missing would)."""
    (tmp_path / "fine_mod.py").write_text("VALUE = 42\n")
    (tmp_path / "broken_mod.py").write_text("raise ImportError('libbroken.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fine_mod", "broken_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_an_extra_that_is_not_installed_skips():
    with pytest.raises(pytest.skip.Exception, match=r"needs the 'demo' extra: pip install 'semrec\[demo\]'"):
        need_extra("demo", "semrec_no_such_module", "semrec_no_such_module_either")
    assert extra_installed("demo", "semrec_no_such_module") is False


def test_a_module_blocked_in_sys_modules_counts_as_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "json", None)  # how the tests simulate a missing extra
    with pytest.raises(pytest.skip.Exception):
        need_extra("demo", "json")


def test_an_installed_extra_returns_its_modules(fake_modules):
    fine, loaded = need_extra("demo", "fine_mod", "json")
    assert fine.VALUE == 42 and loaded is json
    assert extra_installed("demo", "fine_mod") is True


def test_a_half_installed_extra_fails(fake_modules):
    with pytest.raises(pytest.fail.Exception, match=r"'demo' extra is half installed: fine_mod found, semrec_no_such_module missing"):
        need_extra("demo", "fine_mod", "semrec_no_such_module")


def test_an_installed_extra_that_does_not_import_fails(fake_modules):
    with pytest.raises(pytest.fail.Exception, match=r"'demo' extra is installed but 'broken_mod' does not import \(ImportError: libbroken\.so"):
        need_extra("demo", "fine_mod", "broken_mod")
    with pytest.raises(pytest.fail.Exception, match="does not import"):
        extra_installed("demo", "broken_mod")
