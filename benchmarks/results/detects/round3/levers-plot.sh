#!/bin/bash
# docs/img/robustness-levers.png, from the repository root
R2=benchmarks/results/detects/round2 R3=benchmarks/results/detects/round3
python benchmarks/robustness_levers.py --out docs/img/robustness-levers.png \
  "rall30: robust, 64 ch, 30 ep (CPU)=$R2/robustness-rall30.json" "r100: 100 ep=$R3/robustness-r100.json" \
  "r220: 220 ep=$R3/robustness-r220.json" "r100w: 128 ch, 100 ep=$R3/robustness-r100w.json" \
  "r150ww: 256 ch, 150 ep=$R3/robustness-r150ww.json" "s200w: robust-strong, 128 ch, 200 ep=$R3/robustness-s200w.json" \
  "g200w: geometric, 128 ch, 200 ep=$R3/robustness-g200w.json"
