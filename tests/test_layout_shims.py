"""The old module paths (issue 18's moves) still import, as the very modules or objects of their
new homes, and say once, at the importing line, that they are deprecated; the package itself
never imports through them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: old module -> new home (the shim is that module)
MOVED = {
    "ambertools": "hybridff.mm.ambertools",
    "atomtyping": "hybridff.mm.atomtyping",
    "cache": "hybridff.mm.cache",
    "data": "hybridff.io.frames",
    "fileio": "hybridff.io.files",
    "forcefield_files": "hybridff.mm.forcefield_files",
    "forcefield_tables": "hybridff.mm.tables",
    "molecule": "hybridff.io.molecule",
    "parameters": "hybridff.mm.parameters",
    "system": "hybridff.mm.system",
    "templates": "hybridff.mm.templates",
}

#: the modules of the old package hybridff.qm, now in hybridff.labels.qm
QM_SUBMODULES = ("base", "xtb", "dft")


def _run(code: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    script = tmp_path / "importer.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *flags, str(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_old_paths_warn_at_the_importer_and_are_the_new_modules(tmp_path) -> None:
    lines = ["import importlib, warnings",
             "with warnings.catch_warnings(record=True) as caught:",
             "    warnings.simplefilter('always')"]
    lines += [f"    import hybridff.{old}" for old in MOVED]
    lines += ["    import hybridff.simulation", "    import hybridff.sampling",
              "import hybridff.md.prepare, hybridff.md.reporters, hybridff.labels.samplers",
              "deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)",
              "                and str(w.message).startswith('hybridff.')]",
              "for w in deprecations:",
              "    print(w.lineno, w.filename == __file__, w.message)"]
    lines += [f"assert hybridff.{old} is importlib.import_module({new!r})"
              for old, new in MOVED.items()]
    lines += ["assert hybridff.simulation.prepare_system is hybridff.md.prepare.prepare_system",
              "assert hybridff.simulation._Production is hybridff.md.reporters.Production",
              "assert hybridff.sampling.SAMPLERS is hybridff.labels.samplers.SAMPLERS"]
    done = _run("\n".join(lines) + "\n", tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" ", 2) for line in done.stdout.splitlines()]
    names = [*MOVED, "simulation", "sampling"]
    assert len(rows) == len(names), done.stdout
    for (lineno, here, message), (k, old) in zip(rows, enumerate(names), strict=True):
        assert int(lineno) == 4 + k and here == "True", done.stdout  # the importing line
        assert message.startswith(f"hybridff.{old} is deprecated: import hybridff."), message
    assert "hybridff.mm.tables" in done.stdout  # names where to import it from


def test_the_old_qm_package_reexports_labels_qm_and_its_modules_are_the_new_ones(tmp_path) -> None:
    lines = ["import importlib, warnings",
             "with warnings.catch_warnings(record=True) as caught:",
             "    warnings.simplefilter('always')",
             "    import hybridff.qm.xtb",
             "    from hybridff.qm import ENGINES, QMEngine, QMResult, get_engine",
             "    import hybridff.qm.base, hybridff.qm.dft",
             "import hybridff.labels.qm as new",
             "for w in caught:",
             "    if issubclass(w.category, DeprecationWarning):",
             "        print(w.lineno, w.filename == __file__, w.message)",
             "assert (ENGINES, QMEngine, QMResult, get_engine) == (new.ENGINES, new.QMEngine,",
             "                                                    new.QMResult, new.get_engine)",
             "assert ENGINES is new.ENGINES and QMEngine is new.base.QMEngine"]
    lines += [f"assert hybridff.qm.{name} is new.{name} is importlib.import_module("
              f"'hybridff.labels.qm.{name}')" for name in QM_SUBMODULES]
    # an entry point or user code naming the old module:class finds the same class
    lines += ["from hybridff.registry import _Lazy",
              "assert _Lazy('hybridff.qm.xtb:XTBEngine').resolve() is new.xtb.XTBEngine",
              "assert ENGINES['xtb'] is new.xtb.XTBEngine and ENGINES['dft'] is new.dft.DFTEngine"]
    done = _run("\n".join(lines) + "\n", tmp_path)
    assert done.returncode == 0, done.stderr
    rows = sorted(line.split(" ", 2) for line in done.stdout.splitlines())
    assert rows == [["4", "True", "hybridff.qm is deprecated: import hybridff.labels.qm"],
                    ["4", "True", "hybridff.qm.xtb is deprecated: import hybridff.labels.qm.xtb"],
                    ["6", "True", "hybridff.qm.base is deprecated: import hybridff.labels.qm.base"],
                    ["6", "True", "hybridff.qm.dft is deprecated: import hybridff.labels.qm.dft"]], \
        done.stdout


def test_the_package_and_its_command_import_no_shim(tmp_path) -> None:
    old = [*MOVED, "simulation", "sampling", "charges.ml_model", "qm",
           *(f"qm.{name}" for name in QM_SUBMODULES)]
    code = ("import importlib, pkgutil, hybridff, hybridff.cli\n"
            f"shims = {sorted('hybridff.' + m for m in old)!r}\n"
            "def shim_only(name):  # walk_packages imports a package to look inside it\n"
            "    if name not in shims:\n"
            "        raise RuntimeError(f'{name} did not import')\n"
            "for m in pkgutil.walk_packages(hybridff.__path__, 'hybridff.', onerror=shim_only):\n"
            "    if m.name not in shims and m.name != 'hybridff.__main__':\n"
            "        importlib.import_module(m.name)\n"
            "print('imported')\n")
    done = _run(code, tmp_path, "-W", "error:hybridff.:DeprecationWarning")
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m", "hybridff",
                          "--help"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "DeprecationWarning" not in cli.stderr
