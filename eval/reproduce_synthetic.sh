#!/usr/bin/env bash
# Reproduces the S3D paper's analyses on the built-in synthetic data (figures in WORKSPACE.md):
# trains each model with the demo recipe (skipping finished runs), then runs the four analyses
# and copies their PNGs and tables to docs/reproduce_synthetic/.
#   bash eval/reproduce_synthetic.sh            # RUNS=runs/reproduce DATA=datasets/synthetic
# PYTHON names the interpreter (default: python3, else python).
# Clips have 13 frames (the demo's 8 otherwise): I2D keeps the reference temporal max pools, whose
# windows are symmetric in time only when T = 5 (mod 8); at other lengths I2D can learn the order
# of frames from the pooling's asymmetry, which the paper's I2D cannot (WORKSPACE.md).
set -euo pipefail
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
DATA=${DATA:-datasets/synthetic}
RUNS=${RUNS:-runs/reproduce}
NUM_FRAMES=${NUM_FRAMES:-13}
MODELS=${MODELS:-"i2d i3d s3d s3dg bottom_heavy_s3d top_heavy_s3d"}
for model in $MODELS; do
  if [ ! -f "$RUNS/$model/export/saved_model.pb" ]; then
    "$PYTHON" -m train.main --model="$model" --num_frames="$NUM_FRAMES" --data_dir="$DATA" --model_dir="$RUNS/$model" | tail -1
  fi
done
dirs=$(for model in $MODELS; do printf "%s," "$RUNS/$model"; done)
dirs=${dirs%,}
"$PYTHON" -m eval.analysis time_reversal --model_dir="$dirs" --num_clips=3 --output_dir="$RUNS/analysis"
"$PYTHON" -m eval.analysis speed_accuracy --model_dir="$dirs" --num_clips=3 --output_dir="$RUNS/analysis"
"$PYTHON" -m eval.analysis weight_stats --model_dir="$RUNS/i3d" --output_dir="$RUNS/analysis"
"$PYTHON" -m eval.analysis tsne --model_dir="$RUNS/s3dg" --output_dir="$RUNS/analysis"
mkdir -p docs/reproduce_synthetic
cp "$RUNS"/analysis/*.png "$RUNS"/analysis/*.md docs/reproduce_synthetic/
