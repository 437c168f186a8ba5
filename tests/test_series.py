"""A series: ``hybridff label MOLECULES ... -o labels/`` writes one label file per molecule
(every frame of every molecule one task) and ``hybridff train MOLECULES labels/ -o models/``
one model per molecule. A 2-worker local cluster gives the serial run's files, which are the
single-molecule command's files; a re-run computes only what is missing; a bad molecule fails
alone; the models are ones ``hybridff evaluate`` accepts; the serial path never imports
Dask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dask_helpers import assert_no_dask

from hybridff.batch import FAILURES
from hybridff.exceptions import InvalidOptionError
from hybridff.io.frames import read_extxyz, write_extxyz
from hybridff.labels import series
from hybridff.labels.series import label_series
from hybridff.training.series import train_series

pytest.importorskip("tblite.interface")

ROOT = Path(__file__).resolve().parents[1]
#: two small molecules and one record that cannot be read
SMI = "CO methanol\nC1CC broken\nCCO ethanol\n"
GOOD = ["methanol", "ethanol"]
N = 4
COMMON = {"seed": 2, "charge_method": "gasteiger", "progress": False, "threads": 1}
TRAIN = {"charge_method": "gasteiger", "threads": 1}


@pytest.fixture(scope="module")
def serial(smi, tmp_path_factory) -> Path:
    """The reference: the series labelled in-process."""
    folder = tmp_path_factory.mktemp("serial")
    summary = label_series(smi, folder, N, **COMMON)
    assert (summary.frames_added, summary.failed, summary.complete) == (2 * N, 1, False)
    return folder


def labels(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.xyz"))}


def model_content(path: Path) -> dict[str, bytes]:
    """A model file's metadata and tensors: what training decided. (The archive's bytes
    also hold TorchScript's generated class names, which depend on what the process had
    scripted before, and a serialization id.)"""
    import re
    import zipfile

    with zipfile.ZipFile(path) as archive:
        content = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()
                   if re.search(r"/data/\d+$|/extra/hybridff_metadata\.json$", name)}
    assert "extra/hybridff_metadata.json" in content and "data/0" in content, sorted(content)
    return content


def failures(folder: Path) -> list[dict]:
    path = folder / FAILURES
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_serial_series_is_the_single_molecule_labels(smi, serial, tmp_path) -> None:
    from hybridff.training.workflow import label

    assert sorted(labels(serial)) == sorted(f"{n}.xyz" for n in GOOD)
    (bad,) = failures(serial)
    assert bad["name"] == "broken" and bad["record"] == 2 and bad["worker"] == "in-process"
    assert bad["reason"].startswith(f"{smi}:2: unparseable SMILES 'C1CC'")
    single = tmp_path / "ethanol.xyz"
    assert label("CCO", single, N, **COMMON) == N
    assert single.read_bytes() == (serial / "ethanol.xyz").read_bytes()


def test_cluster_gives_the_serial_files(smi, serial, cluster, tmp_path) -> None:
    """Every frame of both molecules is one task on the same 2 workers."""
    summary = label_series(smi, tmp_path / "dask", N, scheduler=cluster.scheduler_address,
                           **COMMON)
    assert (summary.frames_added, summary.failed) == (2 * N, 1)
    assert sum(summary.per_worker.values()) == 2 * N
    assert len(summary.per_worker) == 2, summary.per_worker  # both workers labelled frames
    assert labels(tmp_path / "dask") == labels(serial)


def test_resume_computes_only_what_is_missing(smi, serial, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "resume"
    folder.mkdir()
    numbers = [6, 8, 1, 1, 1, 1]
    held = read_extxyz(serial / "methanol.xyz", numbers)
    keep = [0, 2]  # methanol keeps samples 0 and 2; ethanol has no file yet
    write_extxyz(folder / "methanol.xyz", numbers, held.positions[keep], held.energies[keep],
                 held.forces[keep], info=[held.info[k] for k in keep],
                 dipoles_e_nm=held.dipoles[keep])
    computed = []
    compute = series.compute_frame

    def counting(task):
        computed.append((len(task.numbers), task.index))
        return compute(task)

    monkeypatch.setattr(series, "compute_frame", counting)
    summary = label_series(smi, folder, N, **COMMON)
    assert sorted(computed) == sorted([(6, 1), (6, 3)] + [(9, k) for k in range(N)])
    assert summary.frames_added == 2 + N
    assert labels(folder) == labels(serial)
    computed.clear()
    again = label_series(smi, folder, N, **COMMON)  # the broken record: skipped this time
    assert computed == [] and again.frames_added == 0
    assert (again.already_done, again.skipped_failed, again.failed) == (2, 1, 0)
    with pytest.raises(InvalidOptionError, match="other settings"):
        label_series(smi, folder, N, **{**COMMON, "charge_method": "ml"})


@pytest.fixture(scope="module")
def models(smi, serial, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    config = _config()
    summary = train_series(smi, serial, folder, config=config, progress=False, **TRAIN)
    # the broken record has no label file: counted as lacking it, not as failed
    assert (summary.written, summary.failed, summary.lacking) == (2, 0, ["broken"])
    assert not summary.complete and "lack their input (broken)" in summary.line()
    return folder


def _config(**options):
    from hybridff.training.trainer import TrainConfig

    return TrainConfig(epochs=2, seed=0, hidden=(8,), **options)


def test_series_models_are_evaluated(smi, serial, models, tmp_path) -> None:
    from hybridff.cli import main
    from hybridff.training.workflow import train

    assert sorted(p.name for p in models.glob("*.pt")) == sorted(f"{n}.pt" for n in GOOD)
    for smiles, name in (("CO", "methanol"), ("CCO", "ethanol")):
        report = tmp_path / f"{name}.json"
        assert main(["evaluate", smiles, str(serial / f"{name}.xyz"), "--model",
                     str(models / f"{name}.pt"), "--json", str(report)]) == 0
        assert json.loads(report.read_text())["n_frames"] == N
    # the same file as hybridff train --no-progress of that molecule alone
    single = tmp_path / "methanol.pt"
    train("CO", serial / "methanol.xyz", single, _config(progress=False),
          charge_method="gasteiger")
    assert model_content(single) == model_content(models / "methanol.pt")


def test_series_train_resumes(smi, serial, models, tmp_path) -> None:
    folder = tmp_path / "again"
    folder.mkdir()
    for p in models.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    ethanol = (folder / "ethanol.pt").read_bytes()
    (folder / "ethanol.pt").write_bytes(ethanol[: len(ethanol) // 2])  # cut short
    summary = train_series(smi, serial, folder, config=_config(), progress=False, **TRAIN)
    assert (summary.already_done, summary.written) == (1, 1)
    assert model_content(folder / "ethanol.pt") == model_content(models / "ethanol.pt")
    with pytest.raises(InvalidOptionError, match="other settings"):
        train_series(smi, serial, folder, config=_config(), progress=False, ml_only=True,
                     **TRAIN)


def test_series_train_on_a_cluster(smi, serial, models, cluster, tmp_path) -> None:
    summary = train_series(smi, serial, tmp_path / "dask", config=_config(), progress=False,
                           scheduler=cluster.scheduler_address, **TRAIN)
    assert summary.written == 2 and sum(summary.per_worker.values()) == 2
    for name in GOOD:
        assert model_content(tmp_path / "dask" / f"{name}.pt") == \
            model_content(models / f"{name}.pt")


def test_cli_series(smi, serial, tmp_path, capsys) -> None:
    from hybridff.cli import main

    out = tmp_path / "labels"
    code = main(["label", str(smi), "--n", str(N), "--seed", "2", "--charges", "gasteiger",
                 "--no-progress", "-o", f"{out}/"])
    assert code == 1  # the broken record has no file
    said = capsys.readouterr().out
    assert f"{2 * N} frames added" in said and "1 molecules failed" in said
    assert labels(out) == labels(serial)
    code = main(["train", str(smi), str(serial), "-o", str(tmp_path / "m.pt"), "--workers",
                 "2"])
    assert code == 2  # --workers with one model file


def test_serial_series_does_not_import_dask(smi, tmp_path) -> None:
    code = (
        "import sys\n"
        "from hybridff.labels.series import label_series\n"
        "from hybridff.training.series import train_series\n"
        "from hybridff.training.trainer import TrainConfig\n"
        f"s = label_series({str(smi)!r}, 'labels', 2, charge_method='gasteiger', "
        "progress=False)\n"
        "assert s.frames_added == 4, s\n"
        "t = train_series(" f"{str(smi)!r}" ", 'labels', 'models', config=TrainConfig("
        "epochs=1, hidden=(4,)), charge_method='gasteiger', progress=False)\n"
        "assert t.written == 2, t\n"
    )
    assert_no_dask(code, tmp_path)
