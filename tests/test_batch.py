"""Many molecules, one output file each (``hybridff parameterize/charges -o FOLDER/``):
a local Dask cluster of 2 worker processes gives the same files as the serial run; a re-run
computes only the missing or incomplete files; a bad molecule is recorded with its reason
while the rest finish; a molecule that kills its workers is recorded too; the folder keeps
its settings and one writer; the serial path never imports Dask."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from dask_helpers import assert_no_dask

from hybridff.batch import (
    FAILURES,
    MANIFEST,
    ChargesJob,
    ParameterizeJob,
    output_stems,
    read_records,
    run_batch,
)
from hybridff.exceptions import InvalidOptionError, MoleculeInputError, OutputBusyError

ROOT = Path(__file__).resolve().parents[1]
#: six small molecules (one salt, one with a duplicate name, one unnamed) and one bad SMILES
SMI = """# name column optional
CCO ethanol
c1ccccc1O phenol
C1CC broken
CC(=O)[O-].[Na+] acetate/sodium
CC(=O)N ethanol
CN
OC(=O)c1ccccc1 benzoic_acid
"""
GOOD = ["ethanol", "phenol", "acetate_sodium", "ethanol-5", "mol6", "benzoic_acid"]
JOBS = {"parameterize": ParameterizeJob("gasteiger"), "charges": ChargesJob("gasteiger")}


@pytest.fixture(scope="module")
def serial(smi, tmp_path_factory) -> dict[str, Path]:
    """Reference folders: each job run in-process."""
    out = {}
    for name, job in JOBS.items():
        folder = tmp_path_factory.mktemp(f"serial-{name}")
        summary = run_batch(smi, folder, job, progress=False)
        assert (summary.written, summary.failed, summary.total) == (6, 1, 7)
        out[name] = folder
    return out


def outputs(folder: Path) -> dict[str, bytes]:
    """name -> content of each molecule's file."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix in (".xml", ".sdf", ".csv", ".mol2")}


def failures(folder: Path) -> list[dict]:
    path = folder / FAILURES
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_output_names() -> None:
    assert output_stems(["ethanol", "", "a b/c", "Ethanol", "ethanol", " ..x.. ", "mol2"]) == \
        ["ethanol", "mol2", "a_b_c", "Ethanol-4", "ethanol-5", "x", "mol2-7"]
    assert len(output_stems(["x" * 300])[0]) == 80


def test_sdf_records_fail_alone(tmp_path) -> None:
    """An SDF's records are read one by one: a broken one fails alone, named by its title;
    each file equals what the single-molecule command writes."""
    from rdkit import Chem

    from hybridff.cli import main

    good = Chem.MolToMolBlock(Chem.AddHs(Chem.MolFromSmiles("CCO")))
    sdf = tmp_path / "set.sdf"
    broken = "bad one\n  junk\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nnot an atom line\n"
    sdf.write_text(f"first{good[good.index(chr(10)):]}$$$$\n{broken}M  END\n$$$$\n"
                   f"{good}$$$$\n")
    records = read_records(sdf)
    assert [(r.name, r.kind) for r in records] == [("first", "sdf"), ("bad_one", "sdf"),
                                                   ("mol3", "sdf")]
    second = good.count("\n") + 2  # the first record's lines and its $$$$
    assert records[1].where == f"{sdf}, record 2 (line {second})"
    summary = run_batch(sdf, tmp_path / "out", ChargesJob("gasteiger"), progress=False)
    assert (summary.written, summary.failed, summary.complete) == (2, 1, False)
    (record,) = failures(tmp_path / "out")
    assert record["name"] == "bad_one" and record["record"] == 2
    assert record["reason"].startswith(f"{sdf}, record 2 (line {second}): RDKit could not "
                                       "build a molecule from it")
    single = tmp_path / "single.sdf"
    (tmp_path / "one.sdf").write_text(f"{good}$$$$\n")
    assert main(["charges", str(tmp_path / "one.sdf"), "--method", "gasteiger", "-o",
                 str(single)]) == 0
    assert (tmp_path / "out" / "mol3.sdf").read_bytes() == single.read_bytes()


@pytest.mark.parametrize("command", list(JOBS))
def test_cluster_gives_the_serial_files(command, smi, serial, cluster, tmp_path) -> None:
    summary = run_batch(smi, tmp_path / "dask", JOBS[command], progress=False,
                        scheduler=cluster.scheduler_address)
    assert (summary.written, summary.failed) == (6, 1)
    assert summary.per_worker and all(w.startswith("tcp://127.0.0.1:")
                                      for w in summary.per_worker)
    got, ref = outputs(tmp_path / "dask"), outputs(serial[command])
    assert sorted(got) == sorted(f"{n}{JOBS[command].suffix}" for n in GOOD)
    assert got == ref
    (bad,) = failures(tmp_path / "dask")
    (bad_ref,) = failures(serial[command])
    assert bad["worker"].startswith("tcp://127.0.0.1:") and bad_ref["worker"] == "in-process"
    assert {k: v for k, v in bad.items() if k != "worker"} == \
        {k: v for k, v in bad_ref.items() if k != "worker"}


def test_resume_computes_only_missing_and_incomplete_files(smi, serial, tmp_path) -> None:
    folder = tmp_path / "resume"
    folder.mkdir()
    ref = outputs(serial["parameterize"])
    for name, data in ref.items():
        (folder / name).write_bytes(data)
    (folder / MANIFEST).write_bytes((serial["parameterize"] / MANIFEST).read_bytes())
    (folder / "phenol.xml").unlink()
    (folder / "mol6.xml").write_bytes(ref["mol6.xml"][:200])  # cut short by someone else
    kept = {n: (folder / n).stat().st_mtime_ns for n in ("ethanol.xml", "benzoic_acid.xml")}
    summary = run_batch(smi, folder, JOBS["parameterize"], progress=False)
    # phenol, mol6 and the bad SMILES (no failures file here) were computed, nothing else
    assert (summary.already_done, summary.written, summary.failed) == (4, 2, 1)
    assert outputs(folder) == ref
    assert {n: (folder / n).stat().st_mtime_ns for n in kept} == kept
    again = run_batch(smi, folder, JOBS["parameterize"], progress=False)
    assert (again.already_done, again.written, again.failed, again.skipped_failed) == \
        (6, 0, 0, 1)
    assert "1 skipped that failed before (--retry-failed retries them)" in again.line()


def test_bad_molecule_recorded_the_rest_finish(smi, tmp_path, capsys) -> None:
    from hybridff.cli import main

    out = tmp_path / "cli"
    args = ["parameterize", str(smi), "-o", f"{out}/", "--charges", "gasteiger",
            "--no-progress"]
    assert main(args) == 1  # not every molecule has its file
    line = capsys.readouterr().out
    assert "parameterize: 6 molecule(s) written to" in line
    assert f"1 failed (reasons in {out / FAILURES})" in line
    (record,) = failures(out)
    assert record == {"record": 3, "name": "broken", "source": f"{smi}:4",
                      "reason": f"{smi}:4: unparseable SMILES 'C1CC' (RDKit: unclosed ring "
                                "for input: 'C1CC'); check the brackets, ring closures and "
                                "charges", "worker": "in-process"}
    assert sorted(outputs(out)) == sorted(f"{n}.xml" for n in GOOD)
    # retried, it fails again: recorded once more, not twice
    assert main([*args, "--retry-failed"]) == 1
    assert len(failures(out)) == 2 and failures(out)[1]["name"] == "broken"
    capsys.readouterr()


def test_settings_busy_folder_and_options(smi, serial, tmp_path, capsys) -> None:
    from filelock import FileLock

    from hybridff.batch import LOCK
    from hybridff.cli import main

    with pytest.raises(InvalidOptionError, match=r"holds outputs made with other settings: "
                       r"charge_method 'gasteiger' \(this run: 'ml'\)"):
        run_batch(smi, serial["parameterize"], ParameterizeJob("ml"), progress=False)
    with pytest.raises(InvalidOptionError, match="holds the outputs of hybridff parameterize"):
        run_batch(smi, serial["parameterize"], ChargesJob("gasteiger"), progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    with FileLock(str(busy / LOCK)):
        with pytest.raises(OutputBusyError, match="another run is writing to this folder"):
            run_batch(smi, busy, ChargesJob("gasteiger"), progress=False)
    (tmp_path / "x.mol2").write_text("x")
    with pytest.raises(MoleculeInputError, match=r"reads \.sdf, \.sd, \.mol, \.smi files, not "
                       r"\.mol2; convert it to SDF"):
        read_records(tmp_path / "x.mol2")
    for argv, message in (
            (["parameterize", "CCO", "-o", str(tmp_path / "a.xml"), "--workers", "2"],
             "--workers, --scheduler and --retry-failed write one file per molecule: give -o "
             "a folder"),
            (["parameterize", "CCO", "-o", f"{tmp_path}/p/", "--report", str(tmp_path / "r")],
             "--report writes one file"),
            (["charges", "CCO", "--format", "csv"], "--format applies to -o FOLDER/"),
            (["charges", "CCO", "-o", f"{tmp_path}/c/", "--workers", "0"],
             "a worker count must be 1 or more")):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse refuses the value itself
            code = stop.code
        assert code == 2
        assert message in capsys.readouterr().err


def test_charges_cli_on_a_cluster(smi, cluster, tmp_path, capsys) -> None:
    from hybridff.cli import main

    out = tmp_path / "csv"
    assert main(["charges", str(smi), "-o", f"{out}/", "--method", "gasteiger", "--format",
                 "csv", "--scheduler", cluster.scheduler_address, "--no-progress"]) == 1
    assert "charges: 6 molecule(s) written" in capsys.readouterr().out
    assert sorted(outputs(out)) == sorted(f"{n}.csv" for n in GOOD)
    assert (out / "ethanol.csv").read_text().startswith("index,name,element,charge\n0,C1,C,")


class PoisonJob(ParameterizeJob):
    """Parameterize, but kill the worker process on the molecule named ``phenol``."""

    def run(self, mol, name):
        if name == "phenol":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().run(mol, name)


def test_molecule_that_kills_its_worker_is_recorded(smi, serial, cluster, tmp_path) -> None:
    import cloudpickle

    scheduler = cluster.scheduler
    before = scheduler.allowed_failures, scheduler.WORKER_SATURATION
    # one task at a time per worker, given up at its first killed worker: no bystander
    scheduler.allowed_failures, scheduler.WORKER_SATURATION = 0, 1.0
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        summary = run_batch(smi, tmp_path / "poison", PoisonJob("gasteiger"), progress=False,
                            scheduler=cluster.scheduler_address)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        scheduler.allowed_failures, scheduler.WORKER_SATURATION = before
    assert (summary.written, summary.failed) == (5, 2)
    killed = next(r for r in failures(tmp_path / "poison") if r["name"] == "phenol")
    assert killed["worker"] == "(killed)"
    assert "every Dask worker that processed this molecule died" in killed["reason"]
    ref = outputs(serial["parameterize"])
    del ref["phenol.xml"]
    assert outputs(tmp_path / "poison") == ref
    cluster.wait_for_workers(2)  # the nanny restarts the killed one for the next tests


def test_serial_batch_does_not_import_dask(smi, tmp_path) -> None:
    code = (
        "import sys, hybridff, hybridff.cli.parameterize, hybridff.cli.charges\n"
        "from hybridff.batch import ChargesJob, run_batch\n"
        f"s = run_batch({str(smi)!r}, {str(tmp_path / 'out')!r}, ChargesJob('gasteiger'), "
        "progress=False)\n"
        "assert s.written == 6, s\n"
    )
    assert_no_dask(code, tmp_path)
