#!/usr/bin/env bash
# GPU acceptance run (issue 14): one command, at most 8 minutes on one H200, no Snakemake, everything under one
# output folder. Turns a few lent GPU minutes into committed evidence (docs/gpu.md says what to commit).
#
#   python benchmarks/gpu_data.py                     # once, on a machine with Fashion-MNIST: the ~11 MB subset
#   bash benchmarks/gpu_acceptance.sh                 # on the GPU machine: --device cuda, OUT=results/gpu_acceptance
#   bash benchmarks/gpu_acceptance.sh --device cpu --tiny --out /tmp/acc   # the dry run on a CPU (~3 min)
#
# Options: --device cuda|cpu, --tiny (the small models, a few batches: checks the script, not the GPU),
# --out DIR (default $OUT when set, else results/gpu_acceptance), --data DIR (default benchmarks/gpu_data).
# Steps, each under its own time limit and all under one deadline (TOTAL_S, 470 s; --tiny: 800 s and 4x the limits,
# for a slow or busy CPU; the summary and provenance come after it), so that one hang cannot eat the budget; a step
# that fails, times out or finds no time left is recorded in steps.csv and the run goes on:
#   1. environment      nvidia-smi, torch, CUDA device -> env.txt
#   2. pytest -m gpu    CUDA matches CPU, the bf16 runs (tests/*; skipped where pytest is not installed)
#   3. vision_speed     resnet18, vit12, vit24 at batch 128: images/s per paradigm, LPA's per-batch cost beside its
#                       FLOP ratio, MFU (benchmarks/vision_speed.py)
#   4. topology         ANCRe step time and peak memory against cascade, batch 128 (benchmarks/topology_overhead.py)
#   5. lm_speed         llama_60m, batch 256 x 256 tokens: tokens/s per paradigm, MFU (benchmarks/lm_speed.py)
#   6. training         ResNet-18 and ViT-12, Simultaneous and LPA, on the Fashion-MNIST subset, as many epochs as
#                       ~30 s of training each allows at the speed step 3 measured (python -m lpa_core train)
#   7. summary          mfu.csv, goals.csv, training.csv, summary.md (benchmarks/gpu_report.py)
# Output: OUT/benchmarks/gpu/ (-> commit as results/benchmarks/gpu/), OUT/runs/gpu/ (-> results/runs/gpu/),
# OUT/logs/, OUT/steps.csv, OUT/env.txt, OUT/acceptance.json (provenance).
set -u
DEVICE=cuda TINY=0 OUTDIR=${OUT:-results/gpu_acceptance} DATA=benchmarks/gpu_data
while [ $# -gt 0 ]; do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --tiny) TINY=1; shift ;;
        --out) OUTDIR=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        *) echo "gpu_acceptance: unknown option '$1' (valid: --device, --tiny, --out, --data)" >&2; exit 2 ;;
    esac
done
# The dry run checks the script, not the machine: a slow or busy CPU gets 4x the step limits and a longer deadline.
if [ $TINY = 1 ]; then SLACK=4 TOTAL_S=${TOTAL_S:-800}; else SLACK=1 TOTAL_S=${TOTAL_S:-470}; fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
command -v "$PY" > /dev/null || PY=python
if [ ! -f "$DATA/FashionMNIST/raw/train-images-idx3-ubyte.gz" ]; then
    echo "gpu_acceptance: no Fashion-MNIST subset in $DATA: run 'python benchmarks/gpu_data.py' first (and bring $DATA along)" >&2
    exit 2
fi
B="$OUTDIR/benchmarks/gpu" R="$OUTDIR/runs/gpu" LOGS="$OUTDIR/logs"
mkdir -p "$B" "$R" "$LOGS"
SCRATCH=$(mktemp -d)  # the loader unpacks the .gz beside them: keep that out of DATA and OUT
mkdir -p "$SCRATCH/FashionMNIST/raw" && cp "$DATA"/FashionMNIST/raw/*.gz "$SCRATCH/FashionMNIST/raw/"
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "step,rc,seconds" > "$OUTDIR/steps.csv"
T0=$(date +%s)

step() {  # step NAME LIMIT_S CMD...: run CMD under min(LIMIT_S, time to the deadline), log to LOGS/NAME.log
    local name=$1 limit=$(( $2 * SLACK )) t=$(date +%s) rc
    shift 2
    local left=$(( T0 + TOTAL_S - t ))
    if [ "$name" != summary ] && [ $left -lt 15 ]; then
        echo "$name,no time left,0" >> "$OUTDIR/steps.csv"; echo "$name: skipped (no time left of ${TOTAL_S}s)"; return
    fi
    [ "$name" != summary ] && [ $left -lt "$limit" ] && limit=$left
    echo "[$(( t - T0 ))s] $name: $*"
    timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    echo "$name,$rc,$(( $(date +%s) - t ))" >> "$OUTDIR/steps.csv"
    [ $rc -eq 0 ] || echo "    $name: exit $rc ($([ $rc -eq 124 ] && echo "over its ${limit}s" || echo failed)); see $LOGS/$name.log"
    tail -n 3 "$LOGS/$name.log" | sed 's/^/    /'
}

if [ $TINY = 1 ]; then
    VARCHS=resnet10_w16,vit6_d64 VBATCH="--batch 16 --batches 2 --paradigms simultaneous,lpa"
    TOPO="--archs resnet10_w16,vit6_d64 --batch 4 --reps 2"
    LM="--arch lm_tiny --batch 4 --seq-len 32 --batches 2 --vocab-size 512 --paradigms simultaneous,lpa"
    TRAIN_ARCHS="resnet10_w16 vit6_d64" SUBSET="--train_subset 256 --test_subset 128" IMAGES=256 BUDGET=4 MAXEP=2
    PREC="--precision bf16"  # the dry run goes through the bf16 autocast code on the CPU
else
    VARCHS=resnet18,vit12,vit24 VBATCH="--batch 128 --batches 20"
    TOPO="--archs resnet18,vit12,vit24 --batch 128 --reps 20"
    LM="--arch llama_60m --batch 256 --seq-len 256 --batches 10 --vocab-size 32000"
    TRAIN_ARCHS="resnet18 vit12" SUBSET="" IMAGES=20000 BUDGET=30 MAXEP=30
    PREC=""  # auto: bf16 autocast (and channels_last for ResNets) on CUDA
fi

step env 60 bash -c "nvidia-smi || true; $PY -c 'import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))'"
cp "$LOGS/env.log" "$OUTDIR/env.txt"
if $PY -c "import pytest" 2> /dev/null; then
    step pytest_gpu 120 $PY -m pytest -q -m gpu -p no:cacheprovider tests
else
    echo "pytest_gpu,not installed,0" >> "$OUTDIR/steps.csv"; echo "pytest_gpu: pytest is not installed here: skipped"
fi
step vision_speed 150 $PY benchmarks/vision_speed.py --device "$DEVICE" --archs $VARCHS $VBATCH $PREC --data-dir "$SCRATCH" \
    --out "$B/vision_speed.csv"
step topology_overhead 90 $PY benchmarks/topology_overhead.py --device "$DEVICE" --part vision $TOPO --out "$B/topology_overhead.csv"
step lm_speed 120 $PY benchmarks/lm_speed.py --device "$DEVICE" $LM $PREC --data-dir "$SCRATCH/lm" --out "$B/lm_speed.csv"
for arch in $TRAIN_ARCHS; do
    case $arch in
        resnet*) RECIPE="--batch_size 128 --lr 0.1 --weight_decay 5e-4" ;;  # lpa_core.vision.RECIPES (ResNet)
        *) RECIPE="--batch_size 256 --lr 1e-3 --weight_decay 0.05 --warmup_epochs 1 --final_lr_frac 0.02" ;;  # DeiT's, lr scaled to batch 256
    esac
    [ $TINY = 1 ] && RECIPE="--batch_size 32 ${RECIPE#--batch_size * }"
    for par in simultaneous lpa; do
        EP=$($PY benchmarks/gpu_report.py epochs --speed "$B/vision_speed.csv" --arch "$arch" --paradigm $par \
             --images $IMAGES --budget $BUDGET --max $MAXEP 2> /dev/null || echo 1)
        step "train_${arch}_$par" $(( BUDGET * 2 + 60 )) $PY -m lpa_core train --exp gpu --arch "$arch" --paradigm $par \
            --datasets fashion_mnist --seeds 0 --data_dir "$SCRATCH" --device "$DEVICE" --epochs "$EP" \
            --eval_every $(( EP > 4 ? EP / 4 : 1 )) --n_embed 150 $RECIPE $SUBSET $PREC --ckpt_every_s 1e9 \
            --out "$R/$arch/$par/seed0" --ckpt-dir "$SCRATCH/ck/$arch/$par"
    done
done
$PY - "$OUTDIR" "$DEVICE" "$TINY" << 'EOF'
import sys
from lpa_core import io
out, device, tiny = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
io.write_json(f"{out}/acceptance.json", {**io.provenance(device), "tiny": tiny,
                                         "steps": open(f"{out}/steps.csv").read().splitlines()[1:]})
EOF
step summary 60 $PY benchmarks/gpu_report.py summary --out "$OUTDIR"
cat "$LOGS/summary.log"
echo "[$(( $(date +%s) - T0 ))s] done -> $OUTDIR (steps: $OUTDIR/steps.csv)"
