#!/usr/bin/env bash
# "Rethinking" Table 6 in miniature on the built-in synthetic_detection data (figures in WORKSPACE.md):
# S3D-G with the ground-truth boxes given, S3D-G with its ResNet-50 RPN, and I2D (which cannot see
# time) with the boxes given, trained with the demo_detection recipe (400 steps of 8 clips, 8 frames
# at stride 2, 96x128, depth 0.25) once per seed (skipping finished runs), evaluated by eval.main
# (frame-mAP at IoU 0.5, ACT and VOC), and tabulated in docs/detection/.
#   bash eval/reproduce_detection.sh      # DATA=datasets/synthetic_detection RUNS=runs/detection SEEDS="0 1"
# PYTHON names the interpreter (default: python3, else python).
set -euo pipefail
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
DATA=${DATA:-datasets/synthetic_detection}
RUNS=${RUNS:-runs/detection}
SEEDS=${SEEDS:-"0 1"}
OUTPUT=${OUTPUT:-docs/detection}
[ -f "$DATA/dataset_info.json" ] || "$PYTHON" -m data.prepare --dataset=synthetic_detection --output_dir="$DATA" | tail -1
run() {  # RUN_DIR FLAGS...: trains unless finished (summary.json), evaluates unless evaluated
  local dir=$1
  shift
  [ -f "$dir/summary.json" ] || "$PYTHON" -m train.main --dataset=synthetic_detection --data_dir="$DATA" \
    --model_dir="$dir" "$@" | tail -1
  [ -f "$dir/eval/validation/detection/results.json" ] || "$PYTHON" -m eval.main --model_dir="$dir" --batch_size=8 | tail -1
}
for seed in $SEEDS; do
  run "$RUNS/seed$seed/s3dg_given" --model=s3dg_detector --proposals=given --seed="$seed"
  run "$RUNS/seed$seed/s3dg_rpn" --model=s3dg_detector --proposals=rpn --seed="$seed"
  run "$RUNS/seed$seed/i2d_given" --model=i2d_detector --proposals=given --seed="$seed"
done
mkdir -p "$OUTPUT"
"$PYTHON" - "$RUNS" "$OUTPUT" <<'PY'
import csv, json, pathlib, statistics, sys
runs, output = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = []
for results in sorted(runs.glob("seed*/*/eval/validation/detection/results.json")):
    run = results.parents[3]
    summary, found = json.loads((run / "summary.json").read_text()), json.loads(results.read_text())
    rows.append({"seed": run.parent.name, "run": run.name, "frame_map_act": found["frame_map_act"],
                 "frame_map_voc": found["frame_map_voc"], "val_roi_accuracy": summary["val_roi_accuracy"],
                 "train_seconds": round(summary["train_seconds"])})
with open(output / "runs.csv", "w", newline="") as file:
    writer = csv.DictWriter(file, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
lines = ["| model | proposals | runs | frame-mAP (ACT) | frame-mAP (VOC) | each run (ACT) |", "|---|---|---|---|---|---|"]
for name, model, proposals in (("s3dg_given", "S3D-G", "given"), ("s3dg_rpn", "S3D-G", "RPN"), ("i2d_given", "I2D", "given")):
    act = [r["frame_map_act"] for r in rows if r["run"] == name]
    voc = [r["frame_map_voc"] for r in rows if r["run"] == name]
    if act:
        spread = lambda v: f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
        lines.append(f"| {model} | {proposals} | {len(act)} | {spread(act)} | {spread(voc)} | "
                     f"{', '.join(f'{a:.3f}' for a in act)} |")
(output / "table6.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
