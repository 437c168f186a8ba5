#!/usr/bin/env bash
# Train the hybrid and the ML-only model of one architecture on DATA_DIR/train.xyz and evaluate
# both on every DATA_DIR/test_*.xyz (the table of docs/ml-correction.md, "Which network").
#
#   bash scripts/architecture_table.sh MOLECULE DATA_DIR OUT_DIR ARCHITECTURE [train options...]
#
# Resumable: models and reports already in OUT_DIR are kept. Training wall times go to
# OUT_DIR/train_seconds_<model>.txt; reports to OUT_DIR/report_<test>.json.
set -euo pipefail
molecule=$1; data=$2; out=$3; arch=$4; shift 4
mkdir -p "$out"
train() {
  local name=$1; shift
  if [[ ! -f "$out/$name.pt" ]]; then
    local start=$SECONDS
    hybridff train "$molecule" "$data/train.xyz" -o "$out/$name.pt" --no-progress \
      --architecture "$arch" "$@"
    echo $((SECONDS - start)) > "$out/train_seconds_$name.txt"
  fi
}
train hybrid "$@"
train ml_only --ml-only "$@"
for test_file in "$data"/test_*.xyz; do
  test=$(basename "$test_file" .xyz)
  report="$out/report_$test.json"
  [[ -f "$report" ]] || hybridff evaluate "$molecule" "$test_file" --model "$out/hybrid.pt" \
    --ml-only "$out/ml_only.pt" --json "$report"
done
