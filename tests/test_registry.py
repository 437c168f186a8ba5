"""The one registry helper: lazy built-ins, the decorator, entry points of other packages."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from hybridff.exceptions import OptionalDependencyError, UnknownNameError
from hybridff.registry import Registry


def _write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def _install_plugin(folder: Path, dist: str, entry_points: dict[str, dict[str, str]]) -> None:
    """A minimal installed distribution on ``folder`` (a .dist-info with entry points)."""
    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("hff_demo")]:
        del sys.modules[name]


def test_lazy_entry_imported_on_first_lookup(plugin_path):
    _write_module(plugin_path, "hff_demo_lazy", "def thing():\n    return 42\n")
    reg = Registry("widget", entries={"lazy": "hff_demo_lazy:thing"})
    assert "lazy" in reg and list(reg) == ["lazy"]
    assert "hff_demo_lazy" not in sys.modules  # listing and membership import nothing
    assert reg["lazy"]() == 42
    assert "hff_demo_lazy" in sys.modules


def test_register_decorator_and_unknown_name():
    reg: Registry = Registry("QM method")

    @reg.register("b")
    def b() -> str:
        return "b"

    reg.register("a", len)
    assert reg["b"] is b and reg["a"] is len
    with pytest.raises(UnknownNameError, match=r"unknown QM method 'c'; known methods: a, b$"):
        reg["c"]
    with pytest.raises(KeyError):  # UnknownNameError is a KeyError for callers catching that
        reg["c"]
    assert reg.get("c") is None


def test_entry_point_found_by_name_and_loaded_lazily(plugin_path):
    _write_module(plugin_path, "hff_demo_plugin", "def widget():\n    return 'from plugin'\n"
                  "def other():\n    return 'shadow'\n")
    _install_plugin(plugin_path, "hff-demo-plugin", {"hff_demo.widgets": {
        "plugged": "hff_demo_plugin:widget", "builtin": "hff_demo_plugin:other"}})
    reg: Registry = Registry("widget", "hff_demo.widgets")
    reg.register("builtin", str)
    assert reg.names() == ["builtin", "plugged"]
    assert "plugged" in reg
    assert "hff_demo_plugin" not in sys.modules  # discovered, not loaded
    assert reg["plugged"]() == "from plugin"
    assert reg["builtin"] is str  # an entry point never replaces hybridff's own entry
    with pytest.raises(UnknownNameError, match="known widgets: builtin, plugged"):
        reg["missing"]


def test_broken_entry_point_names_its_package(plugin_path):
    _install_plugin(plugin_path, "hff-demo-broken", {"hff_demo.broken": {
        "gone": "hff_demo_not_there:thing"}})
    reg: Registry = Registry("sampler", "hff_demo.broken")
    with pytest.raises(OptionalDependencyError, match=r"sampler 'gone' .*hff-demo-broken"):
        reg["gone"]


def _fresh(monkeypatch, registry: Registry) -> None:
    """Forget what ``registry`` read of entry points, for the length of one test."""
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "_plugins", None)


def test_charge_method_from_another_package(plugin_path, monkeypatch):
    from hybridff.charges import CHARGE_METHODS, assign_charges, available_charge_methods

    _write_module(plugin_path, "hff_demo_charges", """
        import numpy as np

        def water(mol):
            return np.array([-0.8, 0.4, 0.4])
        """)
    _install_plugin(plugin_path, "hff-demo-charges",
                    {"hybridff.charge_methods": {"hff_demo_water": "hff_demo_charges:water"}})
    _fresh(monkeypatch, CHARGE_METHODS)
    assert "hff_demo_water" in available_charge_methods()
    mol = Chem.AddHs(Chem.MolFromSmiles("O"))
    np.testing.assert_allclose(assign_charges(mol, "hff_demo_water"), [-0.8, 0.4, 0.4])


def test_every_pluggable_part_reads_its_group(plugin_path, monkeypatch):
    from hybridff.charges import CHARGE_METHODS
    from hybridff.labels.qm import ENGINES
    from hybridff.labels.samplers import SAMPLERS
    from hybridff.ml.backend import BACKENDS

    registries = {"hybridff.charge_methods": CHARGE_METHODS, "hybridff.qm_engines": ENGINES,
                  "hybridff.ml_backends": BACKENDS, "hybridff.samplers": SAMPLERS}
    _write_module(plugin_path, "hff_demo_parts", "def part():\n    return 'part'\n")
    _install_plugin(plugin_path, "hff-demo-parts",
                    {group: {"hff_demo_part": "hff_demo_parts:part"} for group in registries})
    for group, registry in registries.items():
        assert registry.group == group
        _fresh(monkeypatch, registry)
        assert registry["hff_demo_part"]() == "part"


def test_builtin_names_unchanged():
    from hybridff.charges import available_charge_methods, get_charge_method
    from hybridff.labels.qm import ENGINES, get_engine
    from hybridff.ml.backend import BACKENDS, get_backend

    assert {"am1bcc", "file", "gasteiger", "ml"} <= set(available_charge_methods())
    assert get_charge_method("gasteiger").__name__ == "gasteiger_charges"
    assert {"xtb", "dft"} <= set(ENGINES) and {"torch", "python"} <= set(BACKENDS)
    assert get_backend("python").__name__ == "_make_python_force"
    with pytest.raises(UnknownNameError, match="known methods: dft, xtb"):
        get_engine("mp2")


def test_extending_page_names_each_registry_and_its_group():
    import importlib
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    rows = re.findall(r"^\| `(hybridff\.\w+)` \| `([\w.]+)\.(\w+)` \|", text, re.M)
    assert len(rows) == 4
    for group, module, name in rows:
        registry = getattr(importlib.import_module(module), name)
        assert isinstance(registry, Registry) and registry.group == group
