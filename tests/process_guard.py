"""A pytest plugin: a test that starts a process must be marked ``integration``.

``./scripts/test --fast`` runs ``-m "not integration"``: the tests that stay inside the pytest
process and run in about a minute. Starting a process from any other test (a service, Redis,
tensor-parallel ranks, ffmpeg, a CLI; directly or through a fixture it uses) fails that test with
the reason, so the fast loop cannot silently grow slow again.
"""

from __future__ import annotations

import multiprocessing.process
import subprocess

import pytest

MARKER = "integration"
_running: list[pytest.Item | None] = [None]  # the test whose setup, call or teardown runs now


def _guarded(start):
    def guarded(self, *args, **kwargs):
        item = _running[0]
        if item is not None and item.get_closest_marker(MARKER) is None:
            pytest.fail(
                f"{item.nodeid} starts a process ({type(self).__name__}): mark it @pytest.mark.{MARKER} "
                "(or pytestmark for the module), so that ./scripts/test --fast leaves it out",
                pytrace=False,
            )
        return start(self, *args, **kwargs)

    return guarded


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: starts processes (services, Redis, ranks, ffmpeg, CLIs)")
    # matplotlib runs `fc-list` once per machine to build its font cache, on first import: let that happen
    # here, before the guard, not inside whichever test first draws a figure on a fresh machine
    import matplotlib.font_manager  # noqa: F401

    subprocess.Popen._execute_child = _guarded(subprocess.Popen._execute_child)  # type: ignore[method-assign]
    multiprocessing.process.BaseProcess.start = _guarded(multiprocessing.process.BaseProcess.start)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _running[0] = item
    try:
        yield
    finally:
        _running[0] = None
