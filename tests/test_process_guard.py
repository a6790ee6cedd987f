"""The fast loop stays fast: an unmarked test that starts a process fails (tests/process_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PLANTED = """
import subprocess

import pytest


@pytest.fixture(scope="module")
def service():
    return subprocess.run(["true"], check=True)


def test_unmarked_starts_a_process():
    subprocess.run(["true"], check=True)


def test_unmarked_uses_a_fixture_that_starts_one(service):
    pass


@pytest.mark.integration
def test_marked_starts_a_process():
    subprocess.run(["true"], check=True)


def test_pure():
    assert 1 + 1 == 2
"""


@pytest.mark.integration
def test_an_unmarked_test_that_starts_a_process_fails(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makeconftest('pytest_plugins = ["process_guard"]')
    pytester.makepyfile(test_planted=PLANTED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfE")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(  # errors (fixtures) are reported before failures
        [
            "*test_unmarked_uses_a_fixture_that_starts_one starts a process*",
            "*test_unmarked_starts_a_process starts a process (Popen): mark it @pytest.mark.integration*",
        ]
    )
    fast = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not integration")
    fast.assert_outcomes(passed=1, failed=1, errors=1, deselected=1)  # the marked one is left out of the fast loop
