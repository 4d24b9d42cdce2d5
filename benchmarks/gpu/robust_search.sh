#!/bin/bash
# Robust Active MINT on a GPU: which training settings keep detection on near-copies?
#
# On a CUDA machine (here: one device call to an H200), from the repository root, after
# `mkdir -p .data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .data/fashion-mnist/`:
#   bash benchmarks/gpu/robust_search.sh smoke   # 1-epoch runs: does every step work there?
#   bash benchmarks/gpu/robust_search.sh round1  # a search round (each at most about 7 minutes)
#
# Every run: README's Fashion-MNIST split (2,000 members, 8,000 externals, 2,000 validation,
# calibration and evaluation non-members), Adam 1e-3, cosine, fp32 (the CPU's arithmetic: GPU
# figures comparable to CPU ones), an audit policy on the inputs of both losses; the plain
# twins train on the same views without aMINT.  round1 also runs |D| = 40,000 of
# benchmarks/dsweep.py.  Each run is one process with one thread (16 cores there); the GPU is
# shared.  Fashion-MNIST's idx files travel in .data/fashion-mnist (git-ignored, carried).
# Every audited run then gets `activemint robustness --scorers active_mint` on the exact copies
# and the five near-copies of issue 8's acceptance.
# Results: $OUT/summary.md (AUC / TPR@1%FPR per copy, test accuracy), $OUT/logs.tar.gz,
# $OUT/runs.tar.xz.* (the run folders without checkpoints; cat them, then tar -xJ).
set -u
MODE=${1:-smoke}
OUT=${OUT:-/tmp/robust-search-out}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
L=/tmp/logs-$MODE R=/tmp/runs-$MODE
rm -rf "$L" "$R"
mkdir -p /usr/share/datasets/fashion-mnist "$OUT" "$L" "$R"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || cp .data/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc --all
  python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } > "$L/machine.txt" 2>&1

SPLIT="--members 2000 --external 8000 --validation 2000 --calibration 2000 --eval-nonmembers 2000"
COMMON="--dataset fashion-mnist $SPLIT --lr 1e-3 --schedule cosine --threads 1 --no-progress --device ${DEVICE:-cuda} --precision fp32"
POL="--audit-policy robust --audit-views all"
TRANSFORMS="translate:2px,crop:0.9,resize:0.75,jpeg:q50,noise:8/255"
TL=300; [ "$MODE" = smoke ] && TL=120
train() {  # NAME ARGS...: one run into $R/NAME, killed after TL seconds
    local name=$1; shift
    timeout "$TL" python3 -m activemint.cli train $COMMON --out "$R/$name" "$@" > "$L/$name.log" 2>&1
    echo "$name exit $? $(date +%T)" >> "$L/done.txt"
}
rob() {  # NAME: Active MINT on exact copies and the acceptance's near-copies
    [ -f "$R/$1/metrics.json" ] || return 0
    timeout 100 python3 -m activemint.cli robustness "$R/$1" --scorers active_mint --transforms "$TRANSFORMS" \
        --out "$R/$1/robustness" > "$L/rb-$1.log" 2>&1
    echo "rb-$1 exit $? $(date +%T)" >> "$L/done.txt"
}

echo "start $(date +%T)" > "$L/done.txt"
case $MODE in
smoke)  # one epoch: does every step work on this machine?
    train r100 --arch small_cnn --setup entry --epochs 1 $POL &
    train p100 --arch small_cnn --setup entry --epochs 1 --mint off $POL & ;;
round1)  # epochs, a wider head, head-only epochs, mobilenet_v2; and |D| = 40,000 of dsweep.py
    timeout $((TL + 140)) python3 benchmarks/dsweep.py --sizes 40000 --epochs 17 --device ${DEVICE:-cuda} --precision fp32 \
        --threads 1 --scorers active_mint,posthoc_head,exact_sha256,feature_nn --out $R/dsweep > "$L/dsweep.log" 2>&1 &
    train r100 --arch small_cnn --setup entry --epochs 100 $POL &
    train r150 --arch small_cnn --setup entry --epochs 150 $POL &
    train r100w --arch small_cnn --setup entry --epochs 100 $POL --head-width 128 --head-hidden 256 &
    train r30h100 --arch small_cnn --setup entry --epochs 30 --head-epochs 100 $POL &
    train m100 --arch mobilenet_v2 --setup entry --epochs 100 $POL &
    train p100 --arch small_cnn --setup entry --epochs 100 --mint off $POL &
    train p150 --arch small_cnn --setup entry --epochs 150 --mint off $POL &
    train pm100 --arch mobilenet_v2 --setup entry --epochs 100 --mint off $POL & ;;
round2)  # longer, wider, views more often, geometry only, deeper taps
    W128="--head-width 128 --head-hidden 256"
    train r220 --arch small_cnn --setup entry --epochs 220 $POL &
    train r200w --arch small_cnn --setup entry --epochs 200 $POL $W128 &
    train r150ww --arch small_cnn --setup entry --epochs 150 $POL --head-width 256 --head-hidden 512 &
    train s200w --arch small_cnn --setup entry --epochs 200 --audit-policy robust-strong --audit-views all $W128 &
    train g200w --arch small_cnn --setup entry --epochs 200 --audit-policy geometric --audit-views all $W128 &
    train o200w --arch small_cnn --setup output --epochs 200 $POL $W128 &
    train mid200w --arch small_cnn --setup middle --epochs 200 $POL $W128 &
    train p220 --arch small_cnn --setup entry --epochs 220 --mint off $POL &
    train p200 --arch small_cnn --setup entry --epochs 200 --mint off $POL &
    train ps200 --arch small_cnn --setup entry --epochs 200 --mint off --audit-policy robust-strong --audit-views all &
    train pg200 --arch small_cnn --setup entry --epochs 200 --mint off --audit-policy geometric --audit-views all & ;;
*) echo "usage: $0 smoke|round1|round2"; exit 2 ;;
esac
sleep 5
# wait for the training runs (not dsweep, which carries on with its robustness step)
while pgrep -f "activemint.cli train" > /dev/null; do sleep 2; done
AUDITED=$(cd $R && for d in */; do grep -q "^mint: true" $d/config.yaml 2>/dev/null && echo ${d%/}; done)
for n in $AUDITED; do rob $n & done
wait
python3 - "$R" $AUDITED > "$OUT/summary.md" <<'EOF'
import json, sys
from pathlib import Path
R = Path(sys.argv[1])
acc = {p.parent.name: json.loads(p.read_text()).get("test_accuracy") for p in R.glob("*/metrics.json")}
print("| run | test acc | " + " | ".join(["exact", "shift 2px", "crop 0.9", "resize 0.75", "JPEG q50", "noise 8/255"]) + " |")
print("|---" * 8 + "|")
for n in sys.argv[2:]:
    p = R / n / "robustness" / "robustness.json"
    if not p.is_file():
        print(f"| {n} | {acc.get(n)} | not finished |")
        continue
    rows = json.loads(p.read_text())["rows"]
    print(f"| {n} | {acc.get(n)} | " + " | ".join(f"{r['auc']:.3f} / {r['tpr_at_1pct_fpr']:.3f}" for r in rows) + " |")
print()
print("plain twins: " + ", ".join(f"{n} {a}" for n, a in sorted(acc.items()) if n not in sys.argv[2:]))
d = R / "dsweep" / "dsweep.md"
print(d.read_text() if d.is_file() else "dsweep: not finished")
EOF
cat "$OUT/summary.md" "$L/done.txt"
tar -C "$L" -czf "$OUT/logs.tar.gz" .
[ "$MODE" = smoke ] && { [ -f "$R/r100/robustness/robustness.json" ]; exit $?; }
tar -C "$R" --exclude='checkpoints' --exclude='cache' -I "xz -T0" -cf /tmp/runs.tar.xz . && split -b 15M /tmp/runs.tar.xz "$OUT/runs.tar.xz." && ls -la "$OUT"
