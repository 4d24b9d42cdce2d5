#!/bin/bash
# Issue 19 on one GPU in one device call: the device data path's smoke test, its throughput
# against today's path, and the paper-scale grid, sized for a 15-minute device budget.
#
# Before the call, once, from the repository root (the idx files travel in an ignored folder):
#   mkdir -p .data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .data/fashion-mnist/
#   grep -qx '/.data/' .git/info/exclude || echo /.data/ >> .git/info/exclude
# The call (device tool `run`; carry [".data"]; timeout_s 590 leaves the start-up inside 15 min):
#   bash benchmarks/gpu/paper_scale.sh all        # smoke, then throughput, then paper: ~9.5 min
#   bash benchmarks/gpu/paper_scale.sh smoke      # ~1.5 min: does every step work there?
#   bash benchmarks/gpu/paper_scale.sh throughput # ~3 min
#   bash benchmarks/gpu/paper_scale.sh paper      # what is left of BUDGET_S, then stops cleanly
# A CPU dry run (tiny sizes, same code paths, seconds of work; the numbers mean nothing):
#   DRY=1 DEVICE=cpu BUDGET_S=3000 bash benchmarks/gpu/paper_scale.sh all   (DRY: every round limit x 8)
#
# Rounds and their limits (seconds, each a `timeout`; BUDGET_S caps the sum, default 540):
#   smoke       120  one-epoch device-path run (robust views, augmentation, bf16) and README's
#                    main job on the GPU, host path and device path: detection within 0.01 AUC
#                    of today's is acceptance 1's second line
#   throughput  200  benchmarks/gpu_throughput.py: resnet50, densenet121, mobilenet_v2 Output,
#                    old path at batch 64 / 512, new path at 512 / 1024 / 2048, then compiled at 1024
#   paper       rest benchmarks/paper_scale.py: 3 archs x (plain twin + 3 setups) at 25k / 35k;
#                    each finished cell's config.yaml + metrics.json(l) go to
#                    benchmarks/results/paper-scale-cells/<cell>/ (returned as paper-cells.tar.gz:
#                    unpack it in the repository root and commit it); the next session skips
#                    those cells and adds the next ones (a cell cut by the time limit restarts:
#                    its checkpoints, ~100 MB per ResNet-50 cell, cannot come back)
# Results in $OUT: summary.md, gpu-throughput.md(+ -compiled), paper-scale.md, main-job-gpu.md,
# logs.tar.gz, paper-cells.tar.gz.
set -u
MODE=${1:-all}
OUT=${OUT:-/tmp/paper-scale-out}
BUDGET_S=${BUDGET_S:-540}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PY:-python3}
L=/tmp/logs-paper-scale
mkdir -p "$OUT" "$L" runs
ROOT=/usr/share/datasets/fashion-mnist
[ -f .data/fashion-mnist/train-images-idx3-ubyte.gz ] && ROOT=$PWD/.data/fashion-mnist
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
X=1; [ -n "${DRY:-}" ] && X=8  # a shared CPU is slower than the GPU these limits are for
cap() { local l; l=$(left); echo $(( l < $1 * X ? l : $1 * X )); }  # a round's limit: its own, or what is left
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  nproc --all; $PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } > "$L/machine.txt" 2>&1
cat "$L/machine.txt"

if [ -n "${DRY:-}" ]; then  # CPU dry run: tiny sizes through the same code
    SIZES="--members 256 --external 256 --validation 128 --calibration 128 --eval-nonmembers 128"
    TP_ARGS="--archs small_cnn --members 512 --external 512 --old-batches 64 --new-batches 128 --steps 2 --warmup 1 --threads 1"
    PS_ARGS="--archs small_cnn --setups entry,output $SIZES --epochs 1 --batch 64 --threads 1"
    MAIN_SIZES="$SIZES"; MAIN_EPOCHS=1; COMPILED=""
    RUNS=/tmp/paper-scale-dry-runs RECORD=/tmp/paper-scale-dry-cells; rm -rf "$RUNS" "$RECORD"  # never the committed cells
else
    SIZES=""
    TP_ARGS="--archs resnet50,densenet121,mobilenet_v2"
    PS_ARGS="--archs resnet50,densenet121,mobilenet_v2 --epochs ${EPOCHS:-30} --batch ${BATCH:-512}"
    MAIN_SIZES="--members 2000 --external 8000 --validation 2000 --calibration 2000 --eval-nonmembers 2000"; MAIN_EPOCHS=17
    COMPILED=1
    RUNS=runs/paper-scale RECORD=benchmarks/results/paper-scale-cells
fi

smoke() {
    local lim; lim=$(cap 120)
    timeout "$lim" $PY -m activemint.cli train --dataset fashion-mnist --data-root "$ROOT" ${SIZES:-"--members 2000 --external 2000 --validation 500 --calibration 500 --eval-nonmembers 500"} \
        --epochs 1 --recipe improved --audit-policy robust --device "$DEVICE" --data-path device --no-progress --out /tmp/smoke-device > "$L/smoke-device.log" 2>&1
    echo "smoke device path: exit $?" | tee -a "$L/done.txt"
    # README's main job on this device: today's path and the device path (acceptance 1: AUC within 0.01)
    for path in host device; do
        timeout "$(cap 60)" $PY -m activemint.cli train --dataset fashion-mnist --data-root "$ROOT" --arch small_cnn --setup entry $MAIN_SIZES \
            --epochs $MAIN_EPOCHS --lr 1e-3 --schedule cosine --device "$DEVICE" --data-path $path --no-progress --out /tmp/main-$path > "$L/main-$path.log" 2>&1
        echo "main job, $path path: exit $?" | tee -a "$L/done.txt"
    done
    $PY - "$OUT/main-job-gpu.md" <<'EOF'
import json, sys
from pathlib import Path
rows = ["# README's main job on the GPU: host path vs device path", "",
        "| path | AUC | TPR@1%FPR | TPR@0.1%FPR | test acc | train s | expected s (printed before training) |", "|---|---|---|---|---|---|---|"]
for path in ("host", "device"):
    p = Path(f"/tmp/main-{path}/metrics.json")
    if not p.is_file():
        rows.append(f"| {path} | not finished |"); continue
    m = json.loads(p.read_text()); s = m["membership"]
    rows.append(f"| {path} | {s['auc']:.4f} | {s['tpr_at_1pct_fpr']:.4f} | {s['tpr_at_0_1pct_fpr']:.4f} | {m['test_accuracy']:.4f} | {m['train_seconds']} | {m.get('expected_seconds')} |")
Path(sys.argv[1]).write_text("\n".join(rows) + "\n"); print("\n".join(rows))
EOF
}

throughput() {
    local lim; lim=$(cap 200)
    timeout $(( lim * 2 / 3 )) $PY benchmarks/gpu_throughput.py --device "$DEVICE" --data-root "$ROOT" $TP_ARGS --compile off \
        --out "$OUT/gpu-throughput.md" > "$L/throughput.log" 2>&1
    echo "throughput: exit $?" | tee -a "$L/done.txt"
    if [ -n "$COMPILED" ] && [ "$(left)" -gt 60 ]; then  # torch.compile of the training forward, one batch size
        timeout $(( lim / 3 )) $PY benchmarks/gpu_throughput.py --device "$DEVICE" --data-root "$ROOT" $TP_ARGS --old-batches 512 \
            --new-batches 1024 --compile on --out "$OUT/gpu-throughput-compiled.md" > "$L/throughput-compiled.log" 2>&1
        echo "throughput compiled: exit $?" | tee -a "$L/done.txt"
    fi
}

paper() {
    local lim=$(( $(left) - 25 ))  # leave time to pack the results
    [ "$lim" -gt 30 ] || { echo "paper: no time left" | tee -a "$L/done.txt"; return; }
    timeout "$lim" $PY benchmarks/paper_scale.py --device "$DEVICE" --data-root "$ROOT" $PS_ARGS --out "$RUNS" \
        --record "$RECORD" --md "$OUT/paper-scale.md" --budget-s $(( lim * 2 / 3 )) > "$L/paper.log" 2>&1
    echo "paper: exit $? (124: stopped by its time limit; resume in the next session)" | tee -a "$L/done.txt"
}

case $MODE in
smoke) smoke ;;
throughput) throughput ;;
paper) paper ;;
all) smoke; throughput; paper ;;
*) echo "usage: $0 smoke|throughput|paper|all"; exit 2 ;;
esac
{ echo "# issue 19 on $(head -1 "$L/machine.txt") ($MODE, $(( $(date +%s) - T0 )) s)"; echo; cat "$L/done.txt"; echo
  for f in main-job-gpu.md gpu-throughput.md gpu-throughput-compiled.md paper-scale.md; do [ -f "$OUT/$f" ] && { cat "$OUT/$f"; echo; }; done
} > "$OUT/summary.md"
cat "$OUT/summary.md"
tar -C "$L" -czf "$OUT/logs.tar.gz" .
[ -d "$RECORD" ] && [ -z "${DRY:-}" ] && tar -czf "$OUT/paper-cells.tar.gz" "$RECORD"
ls -la "$OUT"
