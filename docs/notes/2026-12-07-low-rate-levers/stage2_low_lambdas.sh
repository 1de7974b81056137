#!/usr/bin/env bash
# Issue 28 (notes 2026-12-07-low-rate-levers.md): stage 2 of the 128² scene layer again, every trained quality inside the range the shipped ladder uses
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export OMP_WAIT_POLICY=PASSIVE
R=runs/lowlam
tamc train stage2 --anchor runs/scene128/anchor.pt --dag runs/scene128/dag.json --data data/train --val data/val \
  --out $R/stage2 --lambdas 0.015,0.03,0.06,0.12,0.3 --gain-range 0.17,1.55 --steps-entropy 300 --steps-finetune 1200 --batch 4 \
  --crop 128 --views mix --augment --val-limit 50
echo STAGE2_DONE
tamc export $R/stage2/codec.pt --out $R/model_scene --dag runs/scene128/dag.json --name scene --scene-size 128 --quality-positions 2,2.5,3,3.5,4,4.5,5
tamc train fixed-hyper -m $R/model_scene -o $R/model_fixed --name scene --from-data data/val512 --images 16
python docs/notes/2026-12-07-low-rate-levers/scene_curve.py $R/model_fixed 50 data/val512 docs/notes/2026-12-07-low-rate-levers/curve_low_lambdas.json
