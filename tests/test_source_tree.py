"""liveact.source_tree: services/ and bench/ come from the checkout (or an image's PYTHONPATH), not the wheel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from liveact import source_tree

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_root_is_this_repository():
    assert source_tree.checkout_root() == ROOT


def test_child_env_puts_the_checkout_first_once():
    env = source_tree.child_env({"PYTHONPATH": os.pathsep.join(["/a", str(ROOT), "/b"]), "X": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/a", "/b"] and env["X"] == "1"
    assert source_tree.child_env({})["PYTHONPATH"] == str(ROOT)


def test_require_puts_the_checkout_on_sys_path(monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(ROOT))])
    source_tree.require("bench", "bench")
    assert sys.path[0] == str(ROOT)


def test_require_without_a_checkout_names_the_command_and_the_way_out(monkeypatch):
    monkeypatch.setattr(source_tree, "checkout_root", lambda: None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(ROOT))])
    monkeypatch.delitem(sys.modules, "bench", raising=False)
    with pytest.raises(SystemExit, match=r"`liveact bench` runs bench/ from the LiveAct source tree.*PYTHONPATH"):
        source_tree.require("bench", "bench")
    with pytest.raises(ValueError, match="unknown source package"):
        source_tree.require("tests", "x")
