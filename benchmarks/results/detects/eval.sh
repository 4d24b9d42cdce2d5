#!/bin/bash
# usage (from anywhere; PYTHON defaults to the repository's .venv/bin/python): eval.sh RUN OUTNAME extra...
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the repository root
mkdir -p runs/exp
export PYTHONPATH=$PWD OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
T="translate:1px,translate:2px,crop:0.9,resize:0.75,jpeg:q70,jpeg:q50,noise:8/255,hflip,rotate:5deg,brightness_contrast:0.2"
run=$1; name=$2; shift 2
nohup nice -n 5 ${PYTHON:-.venv/bin/python} -m activemint.cli robustness runs/exp/$run --plain-run runs/exp/plain --transforms $T \
  --max-samples 1000 --out runs/exp/rb-$name "$@" > runs/exp/rb-$name.log 2>&1 &
echo $! > runs/exp/rb-$name.pid
