"""The suite's strict-skip plugin: skips fail unless HYBRIDFF_ALLOW_SKIPS=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INNER = '''
import pytest
pytest.importorskip("{missing}")

def test_never_runs():
    pass
'''
INNER_RUNTIME = '''
import pytest

def test_skips():
    pytest.skip("needs the frobnicator")

@pytest.mark.xfail(reason="known gap")
def test_known_gap():
    assert False

def test_passes():
    pass
'''


def _run(tmp_path: Path, allow: str | None, module_skip: bool) -> subprocess.CompletedProcess:
    if module_skip:
        (tmp_path / "test_module_skip.py").write_text(INNER.format(missing="no_such_module_xyz"))
    else:
        (tmp_path / "test_runtime_skip.py").write_text(INNER_RUNTIME)
    env = {k: v for k, v in os.environ.items() if k != "HYBRIDFF_ALLOW_SKIPS"}
    env["PYTHONPATH"] = str(Path(__file__).parent)
    if allow is not None:
        env["HYBRIDFF_ALLOW_SKIPS"] = allow
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "strict_skips",
                           "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_runtime_skips_fail_by_default(tmp_path) -> None:
    run = _run(tmp_path, None, module_skip=False)
    assert run.returncode == 1, run.stdout
    assert "1 failed, 1 passed, 1 xfailed" in run.stdout
    assert "counts as a failure" in run.stdout and "needs the frobnicator" in run.stdout


def test_module_skip_stops_the_run_by_default(tmp_path) -> None:
    """A module-level importorskip becomes a collection error: the run stops, loudly."""
    run = _run(tmp_path, None, module_skip=True)
    assert run.returncode != 0, run.stdout
    assert "counts as a failure" in run.stdout and "no_such_module_xyz" in run.stdout


@pytest.mark.parametrize("allow", ["1", "yes"])
@pytest.mark.parametrize("module_skip", [False, True])
def test_skips_allowed_on_request(tmp_path, allow, module_skip) -> None:
    run = _run(tmp_path, allow, module_skip)
    assert run.returncode in (0, 5), run.stdout
    assert "1 skipped" in run.stdout
