# Shared by delta_learning_xtb.sh and delta_learning_dft.sh (sourced, not run): the step
# timer, the parameterize step and the end-of-run summary. Expects $molecule and $workdir.

timings=()
run() {  # run NAME COMMAND...: print the command as a user would type it, run it, time it
    local name=$1 t0=$SECONDS
    shift
    echo
    echo "\$ $*"
    "$@"
    timings+=("$(printf '%-16s %5d s' "$name" $((SECONDS - t0)))")
}
start=$SECONDS

parameterize_step() {
    echo "== 1/5 parameterize: atom types, ML charges, terms filled by analogy"
    run parameterize hybridff parameterize "$molecule" -o "$workdir/ligand.xml" \
        --report "$workdir/ligand.json"
}

summary() {  # summary LEVEL FRAMES: errors vs LEVEL on FRAMES ({n}: the number of frames)
    echo
    echo "== summary"
    python - "$workdir" "$1" "$2" <<'PY'
import csv
import json
import sys
from pathlib import Path

work, level, frames = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
report = json.loads((work / "evaluate.json").read_text())
print(f"errors vs {level} on {frames.format(n=report['n_frames'])} "
      "(energy RMSE, offset removed; force RMSE):")
for key, name in (("mm", "MM alone"), ("hybrid", "MM + correction")):
    m = report[key]
    print(f"  {name:16s} {m['energy_rmse_kcal_mol']:7.2f} kcal/mol  "
          f"{m['force_rmse_kcal_mol_A']:7.2f} kcal/mol/A")
run = json.loads((work / "md" / "run.json").read_text())
with open(work / "md" / "log.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))
temps = [float(r["temperature_K"]) for r in rows]
print(f"MD: {len(rows)} log rows, temperature {min(temps):.0f}-{max(temps):.0f} K, "
      f"{run['production']['ns_per_day']:.1f} ns/day; outputs in {work / 'md'}/ "
      "(trajectory.dcd, log.csv, final.pdb, run.json)")
PY
    echo "time per step:"
    printf '  %s\n' "${timings[@]}"
    printf '  %-16s %5d s\n' total $((SECONDS - start))
}
