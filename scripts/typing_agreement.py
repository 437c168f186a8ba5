"""Agreement of hybridff's GAFF2 atom typer with antechamber's types (the reference file).

Reads ``tests/data/gaff2_reference_types.json.gz`` (made by make_typing_reference.py), types
every molecule with :class:`hybridff.mm.atomtyping.AtomTyper` and reports, per split
(``dev``: used while writing the rules; ``eval``: held out) and overall:

* strict agreement per atom and per molecule (identical type strings);
* secondary: agreement modulo swaps of conjugated-pair labels (cc<->cd, ce<->cf, ...), which
  give the same parameters when the whole system is swapped consistently;
* a confusion list (reference type -> our type: count) and a per-type table.

    python scripts/typing_agreement.py                 # print the summary
    python scripts/typing_agreement.py --write-doc     # also rewrite docs/atom-typing.md tables
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
from collections import Counter, defaultdict
from pathlib import Path

from rdkit import Chem, RDLogger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridff.mm.atomtyping import AtomTyper  # noqa: E402

DEFAULT_REF = ROOT / "tests" / "data" / "gaff2_reference_types.json.gz"
SOURCE_XML = ROOT / "scripts" / "forcefield_sources" / "gaff2_typing.xml"
DOC = ROOT / "docs" / "atom-typing.md"
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def load_reference(path: Path = DEFAULT_REF) -> list[dict]:
    """Molecule records of the reference file."""
    with gzip.open(path, "rt") as fh:
        return json.load(fh)["molecules"]


def mol_from_record(rec: dict) -> Chem.Mol:
    """The RDKit molecule (with H, sanitized) that antechamber typed."""
    mol = Chem.MolFromMolBlock(rec["molblock"], removeHs=False)
    if mol is None:
        raise ValueError(f"{rec['name']}: molblock could not be read")
    return mol


def pair_neutral(types: list[str], pairs: dict[str, str]) -> list[str]:
    """Types with every second pair label replaced by its first label."""
    back = {v: k for k, v in pairs.items()}
    return [back.get(t, t) for t in types]


def evaluate(typer: AtomTyper, records: list[dict], key: str = "types") -> dict:
    """Counts and lists of the comparison of ``typer`` with the reference ``key`` types."""
    res: dict = {"n_mol": 0, "n_atom": 0, "atom_ok": 0, "mol_ok": 0, "atom_ok_pair": 0,
                 "mol_ok_pair": 0, "errors": [], "bad": [], "confusion": Counter(),
                 "per_type": defaultdict(lambda: [0, 0])}
    for rec in records:
        ref = rec[key]
        try:
            ours = typer.assign(mol_from_record(rec))
        except Exception as exc:  # noqa: BLE001 - counted and reported
            ours = ["?"] * len(ref)
            res["errors"].append((rec["name"], str(exc)))
        res["n_mol"] += 1
        res["n_atom"] += len(ref)
        ok = [a == b for a, b in zip(ref, ours, strict=True)]
        res["atom_ok"] += sum(ok)
        res["mol_ok"] += all(ok)
        okp = [a == b for a, b in zip(pair_neutral(ref, typer.pairs),
                                      pair_neutral(ours, typer.pairs), strict=True)]
        res["atom_ok_pair"] += sum(okp)
        res["mol_ok_pair"] += all(okp)
        for a, b, good in zip(ref, ours, ok, strict=True):
            res["per_type"][a][0] += 1
            res["per_type"][a][1] += good
            if not good:
                res["confusion"][(a, b)] += 1
        if not all(ok):
            res["bad"].append((rec["name"], rec["smiles"],
                               [(i, a, b) for i, (a, b) in enumerate(zip(ref, ours, strict=True)) if a != b]))
    return res


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.2f}%" if b else "n/a"


def summary_lines(name: str, res: dict) -> list[str]:
    return [
        f"| {name} | {res['n_mol']} | {res['n_atom']} | {pct(res['atom_ok'], res['n_atom'])} "
        f"| {pct(res['mol_ok'], res['n_mol'])} | {pct(res['atom_ok_pair'], res['n_atom'])} "
        f"| {pct(res['mol_ok_pair'], res['n_mol'])} |"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REF)
    parser.add_argument("--xml", type=Path, default=SOURCE_XML,
                        help="file with the typing rules (default: the source rules)")
    parser.add_argument("--pair-order", choices=["index", "canonical"], default="index",
                        help="how conjugated pairs are labelled (see AtomTyper.from_xml)")
    parser.add_argument("--split", choices=["dev", "eval", "all"], default="dev",
                        help="split whose mismatching molecules --show-bad prints")
    parser.add_argument("--key", default="types", help="reference field (types, types_j4)")
    parser.add_argument("--show-bad", type=int, default=0, help="print N mismatching molecules")
    parser.add_argument("--write-doc", action="store_true", help=f"update {DOC.name}")
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")

    typer = AtomTyper.from_xml(args.xml, pair_order=args.pair_order)
    records = load_reference(args.reference)
    sets = {
        "development": [r for r in records if r["split"] == "dev"],
        "held-out evaluation": [r for r in records if r["split"] == "eval"],
        "held-out, batch 2 only (added after the rules were fixed)":
            [r for r in records if r["split"] == "eval" and r.get("batch", 1) == 2],
        "all": records,
    }
    results = {name: evaluate(typer, recs, args.key) for name, recs in sets.items()}

    lines = ["| set | molecules | atoms | atoms identical | molecules identical "
             "| atoms (pair-swap neutral, secondary) | molecules (pair-swap neutral, secondary) |",
             "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        lines += summary_lines(name, res)
    allres = results["all"]
    lines += ["", "Per reference type (all molecules):", "",
              "| type | atoms | identical | agreement |", "|---|---|---|---|"]
    for t, (n, good) in sorted(allres["per_type"].items(), key=lambda kv: (-kv[1][0], kv[0])):
        lines.append(f"| {t} | {n} | {good} | {pct(good, n)} |")
    for name in ("development", "held-out evaluation"):
        lines += ["", f"Confusion, {name} set (reference -> ours: atoms):", ""]
        conf = results[name]["confusion"].most_common()
        lines += [f"- {a} -> {b}: {n}" for (a, b), n in conf] or ["- none"]
    if allres["errors"]:
        lines += ["", f"Typing errors: {len(allres['errors'])}"]
        lines += [f"- {n}: {e[:160]}" for n, e in allres["errors"][:10]]
    text = "\n".join(lines)
    print(text)

    pick = {"dev": "development", "eval": "held-out evaluation", "all": "all"}[args.split]
    shown = results[pick]["bad"][: args.show_bad]
    for name, smi, diffs in shown:
        print(name, smi, diffs)

    if args.write_doc:
        cmd = "python scripts/typing_agreement.py --write-doc"
        machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
        from rdkit import __version__ as rdkit_version
        block = "\n".join([
            BEGIN, "",
            f"Reference: `{args.reference.relative_to(ROOT)}` (field `{args.key}`); "
            f"rules: `{Path(typer.source).relative_to(ROOT)}`.  ",
            f"Command: `{cmd}`; machine: {machine}, RDKit {rdkit_version}.", "",
            text, "", END,
        ])
        doc = DOC.read_text()
        start, stop = doc.index(BEGIN), doc.index(END) + len(END)
        DOC.write_text(doc[:start] + block + doc[stop:])
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
