#!/bin/bash
# Issue 19 item 4 on one GPU in one device call: what each source of externals buys as |D| grows.
# benchmarks/externals_sweep.py: |D| in 40k, 25k, 8k (hardest first) x levers (base E, geometric
# views of E, views of E, the largest same-distribution pool, stronger views, cutmix, digits as
# another source, mixup, mixup + views: in the order benchmarks/results/externals-levers-cpu.md and
# externals-ratio-cpu.md rank them), small_cnn,
# exact copies, a fixed epoch budget, one plain twin per |D|; each finished cell becomes a row of
# the committed record.
#
# Before the call, once, from the repository root (the idx files travel in an ignored folder):
#   mkdir -p .data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .data/fashion-mnist/
#   grep -qx '/.data/' .git/info/exclude || echo /.data/ >> .git/info/exclude
# The call (device tool `run`; carry [".data"]; timeout_s 590 leaves the start-up inside 15 min):
#   bash benchmarks/gpu/externals_sweep.sh
# After it: copy $OUT's externals-sweep.json and .md over benchmarks/results/ and commit them; the
# next session's call skips the recorded cells and adds the next ones (a cell cut by the time
# limit restarts from scratch: run folders do not come back).
# A CPU dry run (toy sizes through the same code, minutes on a shared CPU; the numbers mean nothing):
#   DRY=1 bash benchmarks/gpu/externals_sweep.sh
#
# Knobs (environment): BUDGET_S (default 540: the whole call), EPOCHS (20), BATCH (256: member and
# external batch; lr 1e-3 at 64, sqrt-scaled), SIZES (40000,25000,8000), LEVERS (all, in priority
# order), OUT (/tmp/externals-out).  No cell starts after BUDGET_S - 120 s (a 40k cell's margin).
# Results in $OUT: externals-sweep.md (the table), externals-sweep.json (the record), machine.txt, sweep.log.
set -u
OUT=${OUT:-/tmp/externals-out}
BUDGET_S=${BUDGET_S:-540}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PY:-python3}
mkdir -p "$OUT"
ROOT=/usr/share/datasets/fashion-mnist
[ -f .data/fashion-mnist/train-images-idx3-ubyte.gz ] && ROOT=$PWD/.data/fashion-mnist
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  nproc --all; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"
  $PY -c "import sklearn; print('scikit-learn', sklearn.__version__)" 2>&1 | tail -1; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
REC=benchmarks/results/externals-sweep.json
if [ -n "${DRY:-}" ]; then  # never the committed record
    ARGS="--tiny --device cpu --threads 1 --levers ${LEVERS:-base,mixup,views,pool} --out /tmp/externals-dry-runs"
    rm -rf /tmp/externals-dry-runs "$OUT/externals-sweep.json"
else
    ARGS="--sizes ${SIZES:-40000,25000,8000} --epochs ${EPOCHS:-20} --batch ${BATCH:-256} --device ${DEVICE:-cuda}"
    ARGS="$ARGS --levers ${LEVERS:-base,views-geo,views,pool,views-strong,cutmix,source,mixup,combo} --out runs/externals-sweep"
    [ -f "$REC" ] && cp "$REC" "$OUT/externals-sweep.json"
fi
T0=$(date +%s)
timeout $(( BUDGET_S - 15 )) $PY benchmarks/externals_sweep.py $ARGS --data-root "$ROOT" --budget-s $(( BUDGET_S - 120 )) \
    --record "$OUT/externals-sweep.json" --md "$OUT/externals-sweep.md" > "$OUT/sweep.log" 2>&1
echo "externals sweep: exit $? after $(( $(date +%s) - T0 )) s (124: stopped by its time limit; the recorded cells stay)" | tee -a "$OUT/sweep.log"
tail -40 "$OUT/sweep.log"
ls -la "$OUT"
