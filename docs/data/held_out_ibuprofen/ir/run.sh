#!/usr/bin/env bash
# IR of a held-out molecule (ibuprofen): hybrid trained with --dipoles on 300 default-sampler frames
set -euo pipefail
export OMP_NUM_THREADS=1
mol="CC(C)Cc1ccc(cc1)C(C)C(=O)O"
# run in a folder holding train300.xyz: the first 300 frames of ../train_extra900.xyz
start=$SECONDS
[[ -f hybrid.pt ]] || hybridff train "$mol" train300.xyz -o hybrid.pt --dipoles --threads 1 --no-progress > train.log 2>&1
echo "train $((SECONDS-start)) s" >> times.txt
for run in mm hybrid; do
  start=$SECONDS
  [[ -f $run/run.json ]] || hybridff simulate "$mol" -o $run $([ $run = hybrid ] && echo --model hybrid.pt) \
    --solvent none --constraints none --timestep-fs 0.5 --ns 0.025 --report-ps 0.002 \
    --equilibration-ps 5 --friction 0.1 --threads 1 --no-progress > sim_$run.log 2>&1
  echo "$run $((SECONDS-start)) s" >> times.txt
done
start=$SECONDS
hybridff spectrum hybrid --compare mm -o ir --qm-reference "$mol" > spectrum.log 2>&1
echo "spectrum $((SECONDS-start)) s" >> times.txt
