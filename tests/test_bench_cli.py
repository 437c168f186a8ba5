"""``hybridff bench``: names are listed and checked, scripts run as subprocesses, ratios shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import have_program

from hybridff.cli import main
from hybridff.cli.bench import default_directory, discover, quick_arguments, select
from hybridff.exceptions import UnknownNameError


def test_discovers_the_benchmark_scripts() -> None:
    known = discover(default_directory())
    assert {"parameterize", "charges"} <= set(known)
    assert all(p.name == f"bench_{n}.py" for n, p in known.items())


def test_list(capsys) -> None:
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "parameterize" in out and "charges" in out


def test_unknown_name_lists_the_known_ones(capsys) -> None:
    known = discover(default_directory())
    with pytest.raises(UnknownNameError, match=r"unknown benchmark 'nope'; known: .*parameterize"):
        select(known, ["parameterize,nope"])
    assert main(["bench", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'nope'" in err and "charges" in err
    assert list(select(known, ["charges,parameterize"])) == ["charges", "parameterize"]
    assert list(select(known, None)) == list(known)


def test_quick_arguments(tmp_path) -> None:
    own = tmp_path / "bench_own.py"
    own.write_text('import argparse\np = argparse.ArgumentParser()\np.add_argument("--quick")\n')
    assert quick_arguments("own", own) == ["--quick"]
    plain = tmp_path / "bench_parameterize.py"
    plain.write_text("print('x')\n")
    assert quick_arguments("parameterize", plain) == ["--n", "3"]
    assert quick_arguments("other", plain) == []


def test_failing_benchmark_is_reported(tmp_path, capsys) -> None:
    (tmp_path / "bench_good.py").write_text("print('speed-up (a/b, same run): 3x')\n")
    (tmp_path / "bench_bad.py").write_text("import sys\nprint('half a table')\nsys.exit(3)\n")
    assert main(["bench", "--directory", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "machine:" in out and "software:" in out
    summary = out.split("=== summary")[1]
    assert "bad: FAILED (exit 3)" in summary and "good: ok" in summary
    assert "speed-up (a/b, same run): 3x" in summary


@pytest.mark.skipif(not have_program("antechamber"), reason="antechamber (AmberTools) not found")
def test_quick_parameterize_benchmark_prints_a_ratio(capsys) -> None:
    assert main(["bench", "--quick", "--only", "parameterize"]) == 0
    out = capsys.readouterr().out
    assert "bench_parameterize.py --n 3" in out
    summary = out.split("=== summary")[1]
    assert "parameterize: ok" in summary
    line = next(x for x in summary.splitlines() if "ratio hybridff/antechamber" in x)
    ratio = float(line.split("of totals")[1])
    assert ratio > 0
    assert "3 molecules" in out


def test_default_directory_is_the_checkout() -> None:
    assert default_directory() == Path(__file__).resolve().parents[1] / "benchmarks"


def test_outside_a_checkout_is_one_clear_line(tmp_path, capsys, monkeypatch) -> None:
    import hybridff.cli.bench as bench

    monkeypatch.setattr(bench, "default_directory", lambda: tmp_path / "site" / "benchmarks")
    assert main(["bench", "--list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no bench_*.py scripts in" in err and "source checkout" in err and "--directory" in err
