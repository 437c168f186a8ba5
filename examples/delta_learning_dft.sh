#!/usr/bin/env bash
# Example 3: the delta-learning loop with DFT labels (pyscf; B3LYP/def2-SVP by default).
#
#   bash examples/delta_learning_dft.sh [--labels FILE] [--quick] [--molecule FILE] [--workdir DIR]
#                                       [--frames N] [--xc XC] [--basis BASIS]
#
#   1. parameterize  GAFF2-class types + ML charges -> ForceField XML and a JSON report
#   2. label         conformations from MM MD at 500 K (seeded) with DFT energies and forces,
#                    appended frame by frame; or, with --labels FILE, a copy of the complete
#                    frames of an existing label file
#   3. train         the correction on the DFT - MM residuals (20 % of the frames held out)
#   4. evaluate      MM alone and MM + correction against DFT on the held-out frames
#   5. simulate      MD of MM + correction (openmm-torch), in vacuum unless --solvent tip3p
#
# DFT is the expensive step. Labelling is resumable: interrupt it and re-run the same command
# to continue (the frames already in WORKDIR/labels.xyz are kept). A file another job is still
# writing can be used as it stands: --labels only reads it and copies its complete frames.
#
#   bash examples/delta_learning_dft.sh --labels examples/data/paracetamol_b3lyp_def2svp.xyz
#
# Options (defaults in brackets; --quick changes the ones marked *):
#   --molecule FILE    SDF/mol2 [examples/data/paracetamol.sdf]
#   --workdir DIR      where everything is written [delta_learning_dft]
#   --labels FILE      reuse this label file (its level of theory, all its frames) instead of
#                      running DFT; it is never written to
#   --frames N      *  frames to label [40; quick 8]; with --labels: use the first N [all]
#   --xc XC            functional [b3lyp]
#   --basis BASIS      basis set [def2-svp]
#   --sampler S        conformation sampler of hybridff label (md, or another it offers) [md]
#   --seed N           sampling seed [11; with md, the settings of the shipped paracetamol
#                      DFT frames]
#   --epochs N      *  training epochs [150; quick 50]
#   --ensemble K       ensemble members [1]
#   --steps N       *  MD steps of 2 fs [5000 = 10 ps; quick 200]
#   --solvent S        none (vacuum) or tip3p (3 nm water box, PME) [none]
#   --threads N        OpenMP threads of pyscf [2]; train, evaluate and simulate use one
#                      (torch's threads fight OpenMM's on a small molecule: docs/simulate.md)
#   --quick            small sizes (the test runs this on methanol with a small basis)
#
# Measured on the project's 2-core machine (AMD EPYC), shared with another DFT job and other
# engineers' tests (load average 3-5): B3LYP/def2-SVP of paracetamol costs 83 s of CPU per
# frame (181 s of wall time per frame here with --threads 2; about 45 s on two idle cores),
# so the default 40 frames take 0.5-2 h. With --labels the rest of the loop took 103 s
# (train 51 s on 78 frames, simulate 10 ps 36 s). Details: docs/examples.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
molecule="$here/data/paracetamol.sdf"
workdir=delta_learning_dft
labels="" frames="" xc="" basis="" sampler=md seed=11 epochs="" ensemble=1 steps=""
solvent=none threads=2 quick=0

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --molecule) molecule=$2; shift 2 ;;
        --workdir) workdir=$2; shift 2 ;;
        --labels) labels=$2; shift 2 ;;
        --frames) frames=$2; shift 2 ;;
        --xc) xc=$2; shift 2 ;;
        --basis) basis=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --ensemble) ensemble=$2; shift 2 ;;
        --sampler) sampler=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --solvent) solvent=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "delta_learning_dft.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -n $labels && -n $xc$basis ]]; then
    echo "delta_learning_dft.sh: --xc/--basis do not apply with --labels (its level is used)" >&2
    exit 2
fi
: "${xc:=b3lyp}" "${basis:=def2-svp}"
if [[ $quick == 1 ]]; then
    [[ -n $labels ]] || : "${frames:=8}"
    : "${epochs:=50}" "${steps:=200}"
    md_extra=(--equilibration-ps 0.2 --minimize-iterations 200 --report-ps 0.1)
else
    [[ -n $labels ]] || : "${frames:=40}"
    : "${epochs:=150}" "${steps:=5000}"
    md_extra=(--equilibration-ps 2 --report-ps 0.5)
fi
if [[ $solvent == tip3p ]]; then md_extra+=(--box 3.0); fi

data="$workdir/labels.xyz"
if [[ -n $labels ]]; then
    [[ -f $labels ]] || { echo "delta_learning_dft.sh: no label file $labels" >&2; exit 2; }
    if [[ $(realpath "$labels") == $(realpath -m "$data") ]]; then
        echo "delta_learning_dft.sh: --labels is $data itself; give another --workdir" >&2
        exit 2
    fi
    # extxyz: an atom-count line, a comment line, one line per atom; a frame another job is
    # still appending is left out
    per_frame=$(( $(head -n 1 "$labels") + 2 ))
    complete=$(( $(wc -l < "$labels") / per_frame ))
    use=${frames:-$complete}
    if (( use > complete )); then
        echo "note: $labels holds $complete complete frames; using them all (--frames $use asked)"
        use=$complete
    fi
    if (( use < 5 )); then
        echo "delta_learning_dft.sh: $use frames of $labels are too few to train on (5 or more)" >&2
        exit 2
    fi
fi
mkdir -p "$workdir"
# pyscf's OpenMP threads for every step (hybridff's --threads sets the same variable)
export OMP_NUM_THREADS=$threads
# the step timer (run), the parameterize step and the summary, shared with the other loop
source "$(dirname "${BASH_SOURCE[0]}")/_loop.sh"
parameterize_step

echo
if [[ -n $labels ]]; then
    echo "== 2/5 label: reuse $labels (only read; its complete frames are copied)"
    t0=$SECONDS
    echo
    echo "\$ head -n $((use * per_frame)) $labels > $data"
    head -n $((use * per_frame)) "$labels" > "$data.partial"
    mv "$data.partial" "$data"
    echo "$data: $use frames of $labels"
    timings+=("$(printf '%-16s %5d s' "label (copy)" $((SECONDS - t0)))")
else
    echo "== 2/5 label: MM frames ($sampler sampler, 500 K), $xc/$basis energies and forces (pyscf)"
    run "label ($frames)" hybridff label "$molecule" --method dft --xc "$xc" --basis "$basis" \
        --n "$frames" --sampler "$sampler" --seed "$seed" --threads "$threads" -o "$data"
fi

echo
echo "== 3/5 train: the correction on DFT - MM residuals (20 % of the frames held out)"
run train hybridff train "$molecule" "$data" -o "$workdir/model.pt" --epochs "$epochs" \
    --patience 40 --val-fraction 0.2 --ensemble "$ensemble" --threads 1 --no-progress

echo
echo "== 4/5 evaluate: MM alone and the hybrid against DFT on the held-out frames"
run evaluate hybridff evaluate "$molecule" "$data" --model "$workdir/model.pt" --frames held-out \
    --json "$workdir/evaluate.json" --threads 1

echo
echo "== 5/5 simulate: Langevin MD at 300 K of MM + correction (openmm-torch)"
run simulate hybridff simulate "$molecule" --model "$workdir/model.pt" --solvent "$solvent" \
    --steps "$steps" "${md_extra[@]}" --threads 1 --no-progress --overwrite -o "$workdir/md"

# the level of theory the labels were computed at (their qm_* keys), for the summary
level=$(python - "$workdir/labels.xyz" <<'EOF'
import re
import sys

comment = open(sys.argv[1]).read().split("\n", 2)[1]
qm = dict(re.findall(r"qm_(\w+)=(\S+)", comment))
print(f"{qm['xc']}/{qm['basis']}" if "xc" in qm and "basis" in qm else qm.get("level", "QM"))
EOF
)
summary "$level" "the {n} held-out frames"
