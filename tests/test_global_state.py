"""No process-global state changed at import or left changed by a call: the typer cache is
bounded and keyed by file version, the cache folder is read when used, thread counts are
given back."""

from __future__ import annotations

import os
import shutil

import pytest
from rdkit import Chem

from hybridff.mm.atomtyping import _typer, assign_atom_types, typer_for
from hybridff.mm.forcefield_files import forcefield_path


def test_typer_cache_is_bounded_and_reads_a_changed_file_again(tmp_path):
    rules = tmp_path / "rules.xml"
    shutil.copy(forcefield_path(), rules)
    first = typer_for(rules)
    assert typer_for(str(rules)) is first  # the same file, however spelled
    assert typer_for(rules, pair_order="index") is not first
    text = rules.read_text().replace('name="c3"', 'name="cx"', 1)  # the sp3 carbon renamed
    assert text != rules.read_text()
    rules.write_text(text)
    stat = rules.stat()
    os.utime(rules, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert typer_for(rules) is not first
    assert "cx" in assign_atom_types(Chem.AddHs(Chem.MolFromSmiles("CC")), rules)
    assert _typer.cache_info().maxsize == 8


def test_cache_folder_is_read_when_a_cache_is_made(tmp_path, monkeypatch):
    from hybridff.mm.cache import ParameterCache

    monkeypatch.setenv("HYBRIDFF_CACHE", str(tmp_path / "a"))
    assert ParameterCache().directory == tmp_path / "a"
    monkeypatch.setenv("HYBRIDFF_CACHE", str(tmp_path / "b"))  # after import, still honoured
    assert ParameterCache().directory == tmp_path / "b"


@pytest.fixture
def torch_outside():
    """torch set to a thread count other than its own for the test (and given back): the
    value every block must leave behind."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    outside = 3 if before != 3 else 2
    torch.set_num_threads(outside)
    yield outside
    torch.set_num_threads(before)


def test_torch_threads_blocks_nest_and_give_the_setting_back(torch_outside):
    import torch

    from hybridff.threads import torch_threads

    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == torch_outside


def test_ml_charges_leave_torch_threads_as_they_were(torch_outside):
    import torch

    from hybridff.charges import assign_charges

    assign_charges(Chem.AddHs(Chem.MolFromSmiles("CCO")), "ml")
    assert torch.get_num_threads() == torch_outside


def test_a_command_leaves_the_environment_as_it_was(monkeypatch, capsys):
    from hybridff.cli import THREAD_VARIABLES, main

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        main(["label", "--threads", "2", "-h"])
    assert "--threads" in capsys.readouterr().out
    assert not any(name in os.environ for name in THREAD_VARIABLES)


def test_train_command_leaves_torch_threads_as_they_were(tmp_path, torch_outside):
    import torch

    from hybridff.cli import main

    # fails on the missing label file after the threads were set
    assert main(["train", "CCO", str(tmp_path / "none.xyz"), "-o", str(tmp_path / "m.pt"),
                 "--threads", "1"]) == 2
    assert torch.get_num_threads() == torch_outside


def test_qm_engines_built_from_names_are_reused_and_bounded(monkeypatch):
    import numpy as np

    from hybridff.labels import tasks
    from hybridff.labels.qm import ENGINES, QMEngine

    class Counting(QMEngine):
        name = "counting"

        def __init__(self, level: int = 0) -> None:
            self.level = level

        def raw(self, numbers, positions_bohr, charge=0, multiplicity=1):
            return float(self.level), np.zeros((len(numbers), 3))

    monkeypatch.setitem(ENGINES._entries, "counting", Counting)
    tasks._built_engine.cache_clear()

    def task(level: int) -> tasks.FrameTask:
        return tasks.FrameTask(0, np.array([1, 1]), np.zeros((2, 3)), 0, "counting", {"level": level})

    first = tasks.engine_for(task(0))
    assert tasks.engine_for(task(0)) is first  # one engine per name and options, reused
    assert tasks.engine_for(task(1)) is not first and tasks.engine_for(task(1)).level == 1
    for level in range(2, 2 + tasks.ENGINE_CACHE_SIZE):
        tasks.engine_for(task(level))
    info = tasks._built_engine.cache_info()
    assert info.maxsize == tasks.ENGINE_CACHE_SIZE and info.currsize == tasks.ENGINE_CACHE_SIZE
    assert tasks.engine_for(task(0)) is not first  # the oldest was let go
    tasks._built_engine.cache_clear()
