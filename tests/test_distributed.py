"""QM labels on a Dask cluster: a local cluster of 2 worker processes on loopback labels xTB
frames while one worker process is killed; every sample is written exactly once with the
energies of a serial run of the same seed; a resumed run computes only the missing samples;
a frame whose QM fails is recorded with its reason; no workers left stops the run with a
clear message and keeps what was done; ``import hybridff`` does not import Dask."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from dask_helpers import assert_no_dask, local_cluster

from hybridff import units
from hybridff.exceptions import ClusterError, ExternalToolError, OutputBusyError
from hybridff.io.frames import read_extxyz, reorder_frames, write_extxyz
from hybridff.labels.qm.xtb import XTBEngine
from hybridff.labels.store import failed_path, lock_file
from hybridff.training.workflow import label

pytest.importorskip("tblite.interface")

ETHANOL = "CCO"
N = 8
COMMON = {"seed": 3, "sampler": "md", "charge_method": "gasteiger", "progress": False,
          "threads": 1}
ROOT = Path(__file__).resolve().parents[1]


class ScriptedXTB(XTBEngine):
    """GFN2-xTB that counts its calls over all processes (one file per call under ``marks``)
    and, at the ``kill_at``-th call, kills its own process (once), or at the ``fail_at``-th
    call fails like an SCF that does not converge (once)."""

    def __init__(self, marks: Path, kill_at: int | None = None,
                 fail_at: int | None = None, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.marks = str(marks)
        self.kill_at, self.fail_at, self.interrupt_at = kill_at, fail_at, interrupt_at

    def _once(self, what: str) -> bool:
        try:
            os.close(os.open(os.path.join(self.marks, what), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def compute(self, numbers, positions_nm, charge=0, multiplicity=1):
        Path(self.marks, f"call-{uuid.uuid4().hex}").touch()
        calls = len(list(Path(self.marks).glob("call-*")))
        if calls == self.kill_at and self._once("killed"):
            os.kill(os.getpid(), signal.SIGKILL)  # this worker process dies mid-task
        if calls == self.fail_at and self._once("failed"):
            raise ExternalToolError("tblite GFN2-xTB failed: SCF not converged (scripted)")
        if calls == self.interrupt_at:
            raise KeyboardInterrupt
        return super().compute(numbers, positions_nm, charge, multiplicity)


def calls(marks: Path) -> int:
    return len(list(marks.glob("call-*")))


def sample_indices(path: Path) -> list[int]:
    return [int(i["frame"]) for i in read_extxyz(path).info]


def assert_same_frames(path: Path, reference: Path) -> None:
    """``path`` holds every sample of ``reference`` once, in sample order, with its energies
    and forces (1e-6 eV, eV/Angstrom) and positions."""
    got, ref = read_extxyz(path), read_extxyz(reference)
    assert sample_indices(path) == sample_indices(reference) == list(range(N))
    np.testing.assert_array_equal(got.positions, ref.positions)
    np.testing.assert_allclose(got.energies * units.KJ_PER_MOL_TO_EV,
                               ref.energies * units.KJ_PER_MOL_TO_EV, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.forces, ref.forces, rtol=0,
                               atol=1e-6 * units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM)
    if ref.dipoles is not None:  # the QM dipoles travel with the frames too
        np.testing.assert_allclose(got.dipoles, ref.dipoles, rtol=0, atol=1e-9)
    assert [{k: v for k, v in i.items() if k != "frame"} for i in got.info] == \
        [{k: v for k, v in i.items() if k != "frame"} for i in ref.info]


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    """The reference: N frames of ethanol labelled in-process."""
    out = tmp_path_factory.mktemp("serial") / "serial.xyz"
    assert label(ETHANOL, out, N, **COMMON) == N
    return out


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of 2 worker processes (one thread each) on loopback."""
    import cloudpickle

    # workers cannot import this test module: send ScriptedXTB by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with local_cluster() as local:
        yield local
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_import_hybridff_does_not_import_dask(tmp_path) -> None:
    """Importing hybridff and labelling serially (the default) never loads Dask."""
    code = (
        "import sys, hybridff, hybridff.cli.label, hybridff.labels.distributed\n"
        "from hybridff.training.workflow import label\n"
        f"assert label('C', {str(tmp_path / 'm.xyz')!r}, 1, seed=0, sampler='md', "
        "charge_method='gasteiger', progress=False) == 1\n"
    )
    assert_no_dask(code, tmp_path)


def test_killed_worker_loses_and_duplicates_nothing(cluster, serial, tmp_path, caplog) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "dask.xyz"
    engine = ScriptedXTB(marks, kill_at=3)
    with caplog.at_level(logging.INFO):
        added = label(ETHANOL, out, N, method=engine, scheduler=cluster.scheduler_address,
                      **COMMON)
    assert (marks / "killed").exists(), "no worker was killed: the test did not test that"
    assert added == N
    # the frame of the killed worker ran again (and any result it held that was not yet
    # received: Dask recomputes lost results)
    assert calls(marks) >= N + 1
    assert_same_frames(out, serial)
    assert not failed_path(out).exists()
    assert "tasks per worker: tcp://127.0.0.1:" in caplog.text


def test_resume_computes_only_the_missing_samples(cluster, serial, tmp_path) -> None:
    """A file left with samples 5, 1, 6 (out of order, as a cluster writes them) gets the
    other five, and ends in sample order; a serial run cut short resumes the same way."""
    ref = read_extxyz(serial)
    partial = tmp_path / "partial.xyz"
    held = [5, 1, 6]
    write_extxyz(partial, ref.numbers, ref.positions[held], ref.energies[held],
                 ref.forces[held], info=[ref.info[i] for i in held], append=False,
                 dipoles_e_nm=None if ref.dipoles is None else ref.dipoles[held])
    marks = tmp_path / "marks"
    marks.mkdir()
    added = label(ETHANOL, partial, N, method=ScriptedXTB(marks),
                  scheduler=cluster.scheduler_address, **COMMON)
    assert added == N - len(held) == calls(marks)
    assert_same_frames(partial, serial)

    cut = tmp_path / "cut.xyz"
    marks2 = tmp_path / "marks2"
    marks2.mkdir()
    with pytest.raises(KeyboardInterrupt):
        label(ETHANOL, cut, N, method=ScriptedXTB(marks2, interrupt_at=4), **COMMON)
    assert sample_indices(cut) == [0, 1, 2]
    again = tmp_path / "marks3"
    again.mkdir()
    assert label(ETHANOL, cut, N, method=ScriptedXTB(again), **COMMON) == N - 3
    assert calls(again) == N - 3
    assert_same_frames(cut, serial)
    assert label(ETHANOL, cut, N, method=ScriptedXTB(again), **COMMON) == 0
    assert calls(again) == N - 3


def test_failed_frame_is_recorded_and_the_run_goes_on(cluster, serial, tmp_path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "failing.xyz"
    engine = ScriptedXTB(marks, fail_at=2)
    assert label(ETHANOL, out, N, method=engine, scheduler=cluster.scheduler_address,
                 **COMMON) == N - 1
    records = [json.loads(x) for x in failed_path(out).read_text().splitlines()]
    assert len(records) == 1
    bad = records[0]["frame"]
    assert "SCF not converged (scripted)" in records[0]["reason"]
    assert records[0]["worker"].startswith("tcp://127.0.0.1:")
    assert sample_indices(out) == [k for k in range(N) if k != bad]

    # a failed sample is not retried unless asked; retried, it is computed alone
    assert label(ETHANOL, out, N, method=engine, scheduler=cluster.scheduler_address,
                 **COMMON) == 0
    assert calls(marks) == N
    assert label(ETHANOL, out, N, method=engine, scheduler=cluster.scheduler_address,
                 retry_failed=True, **COMMON) == 1
    assert calls(marks) == N + 1
    assert not failed_path(out).exists()
    assert_same_frames(out, serial)


def test_no_workers_left_stops_with_a_clear_message(serial, tmp_path) -> None:
    from distributed import LocalCluster

    ref = read_extxyz(serial)
    out = tmp_path / "kept.xyz"
    write_extxyz(out, ref.numbers, ref.positions[:2], ref.energies[:2], ref.forces[:2],
                 info=ref.info[:2], append=False)
    before = out.read_bytes()
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0",
                      silence_logs=logging.ERROR) as empty:
        with pytest.raises(ClusterError, match=r"no Dask workers left at tcp://127\.0\.0\.1:"
                           r"\d+ for 1 s, with 6 frame\(s\) still to compute; the frames "
                           r"received so far are kept"):
            label(ETHANOL, out, N, scheduler=empty.scheduler_address, no_workers_timeout=1,
                  **COMMON)
    assert out.read_bytes() == before


def test_unreachable_scheduler_and_busy_output(tmp_path, monkeypatch) -> None:
    from filelock import FileLock

    import hybridff.cluster as dist

    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at "
                       r"tcp://127\.0\.0\.1:9 \(.*\); start one with 'dask scheduler'"):
        label(ETHANOL, tmp_path / "x.xyz", 2, scheduler="tcp://127.0.0.1:9", **COMMON)
    out = tmp_path / "busy.xyz"
    with FileLock(str(lock_file(out))):
        with pytest.raises(OutputBusyError, match=r"busy\.xyz: another run is writing this "
                           r"file \(it holds .*\.busy\.xyz\.lock\)"):
            label(ETHANOL, out, 2, **COMMON)


def test_label_cli_on_a_cluster(cluster, serial, tmp_path, capsys) -> None:
    from hybridff.cli import main

    out = tmp_path / "cli.xyz"
    args = ["label", ETHANOL, "--n", str(N), "-o", str(out), "--seed", "3", "--sampler", "md",
            "--charges", "gasteiger", "--method", "xtb", "--no-progress"]
    assert main([*args, "--scheduler", cluster.scheduler_address]) == 0
    assert f"added {N} frames" in capsys.readouterr().out
    assert_same_frames(out, serial)
    for bad, message in ((["--workers", "0"], "--workers: a worker count must be 1 or more, got 0"),
                         (["--workers", "2", "--scheduler", "tcp://x:1"],
                          "argument --scheduler: not allowed with argument --workers")):
        with pytest.raises(SystemExit):
            main([*args, *bad])
        assert message in capsys.readouterr().err


def test_reorder_frames_keeps_each_frames_text(serial, tmp_path) -> None:
    copy = tmp_path / "copy.xyz"
    copy.write_bytes(serial.read_bytes())
    reorder_frames(copy, [2, 0, 1, *range(3, N)])
    assert sample_indices(copy) == [2, 0, 1, *range(3, N)]
    reorder_frames(copy, [1, 2, 0, *range(3, N)])
    assert copy.read_bytes() == serial.read_bytes()
    with pytest.raises(ValueError, match="a permutation of its 8 complete frames"):
        reorder_frames(copy, [0, 0])
