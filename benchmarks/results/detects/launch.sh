#!/bin/bash
# usage (from anywhere; PYTHON defaults to the repository's .venv/bin/python): launch.sh NAME extra-args...
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the repository root
mkdir -p runs/exp
export PYTHONPATH=$PWD OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
name=$1; shift
nohup nice -n 5 ${PYTHON:-.venv/bin/python} -m activemint.cli train --dataset fashion-mnist --arch small_cnn --setup entry \
  --members 2000 --external 4000 --validation 500 --calibration 1000 --eval-nonmembers 1000 \
  --epochs ${EPOCHS:-25} --lr 1e-3 --seed 0 --threads 1 --no-progress --out runs/exp/$name "$@" > runs/exp/$name.log 2>&1 &
echo $! > runs/exp/$name.pid
