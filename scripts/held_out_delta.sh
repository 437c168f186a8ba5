#!/usr/bin/env bash
# Held-out comparison of GAFF2, the bespoke MM, the hybrid (bespoke MM + correction), the
# hybrid on GAFF2 (--no-refit) and ML-only, all trained on the same frames of one molecule.
#
#   bash scripts/held_out_delta.sh SMILES_OR_FILE OUT_DIR [N_TRAIN]
#
# Labels (GFN2-xTB): N_TRAIN frames of `hybridff label`'s default sampler (seed 1) to train on;
# held out: 100 MD frames (seed 2, 500 K), 100 normal-mode displaced conformers (seed 3) and
# 100 frames of 10 other (ETKDG) conformers displaced by 0.06 A per coordinate (seed 4); the
# training sampler makes neither of the last two kinds. Resumable: label files are continued, models and
# reports already written are kept. Writes OUT_DIR/report_<model>_<test>.json.
set -euo pipefail
molecule=$1; out=$2; n_train=${3:-300}
mkdir -p "$out"
label() { hybridff label "$molecule" --no-progress -o "$out/$1.xyz" "${@:2}"; }
label train --n "$n_train" --seed 1
label test_md --n 100 --seed 2 --sampler md
label test_displaced --n 100 --seed 3 --sampler normal-modes
label test_conformers --n 100 --seed 4 --sampler conformers
train() { [[ -f "$out/$1.pt" ]] || hybridff train "$molecule" "$out/train.xyz" -o "$out/$1.pt" --no-progress "${@:2}"; }
train hybrid
train hybrid_gaff2 --no-refit
train ml_only --ml-only
for model in hybrid hybrid_gaff2; do
  for test in test_md test_displaced test_conformers; do
    report="$out/report_${model}_${test}.json"
    [[ -f "$report" ]] || hybridff evaluate "$molecule" "$out/$test.xyz" --model "$out/$model.pt" \
      --ml-only "$out/ml_only.pt" --json "$report"
  done
done
