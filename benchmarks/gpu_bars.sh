#!/usr/bin/env bash
# Every GPU figure the performance targets name, in one call: GPU time often comes in
# short windows, so the whole check is prepared here and run there once.
#
#   bash benchmarks/gpu_bars.sh                      # CUDA: 4096^2 LR, full model, bf16 (~6 min)
#   bash benchmarks/gpu_bars.sh cpu 64 64            # a smoke run of the same script
#
# Arguments: DEVICE (cuda), SIZE of the end-to-end scene in LR pixels (4096), SIZE of
# the precision check's scene (1024). PEAK_TFLOPS (800, an H100's dense bf16) turns the
# model's TFLOP/s into a share of the card. Each step has its own time limit, so one
# that hangs leaves the others their time; what they print is also kept in
# $OUT/gpu_bars.log when OUT names a folder.
#
# What each step answers:
#   1. sr_bench: end-to-end LR MP/s of the real pipeline and of the model alone (bf16,
#      the device's default tile and batch) on a SIZE^2 scene with an EPSG:3857
#      reference, their ratio ("overhead"), time to the first tile, peak memory.
#   2. precision_check: bf16 against fp32 through the real pipeline, shipped weights
#      for the device: the share of output pixels within 1 DN.
#   3. train_bench: training steps/s for the full model's config, on a GPU when the
#      RRSSRD folders it names are there (they are not redistributed with the project).
set -uo pipefail
cd "$(dirname "$0")"

device=${1:-cuda}
size=${2:-4096}
precision_size=${3:-1024}
peak=${PEAK_TFLOPS:-800}
log=${OUT:+$OUT/gpu_bars.log}
failed=0

step() {  # step LIMIT_SECONDS TITLE COMMAND...: run one, note its failure, go on
    local limit=$1 title=$2
    shift 2
    echo "## $title"
    timeout "$limit" "$@" || { echo "(failed or timed out: exit $?)"; failed=1; }
    echo
}

(
    python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
    step 300 "end to end vs model only, ${size}^2 LR, full model, bf16" \
        python3 sr_bench.py --device "$device" --precision bf16 --width "$size" \
        --heights "$size" --peak-tflops "$peak"
    step 90 "bf16 vs fp32 output, ${precision_size}^2 LR, shipped weights" \
        python3 precision_check.py --device "$device" --size "$precision_size"
    config=../weights/provenance/rrsnet_full_coreg_h100_1.yaml
    if [ "$device" = cpu ]; then
        echo "## training steps/s: skipped on the CPU (the config is the full model's)"
    elif python3 -c "import sys; from rrsgan_geo.training.trainer import load_config
sys.exit(not all(path.is_dir() for path in load_config('$config').data))" 2>/dev/null; then
        step 90 "training steps/s, $(basename $config)" \
            python3 train_bench.py "$config" --device "$device" --steps 20
    else
        echo "## training steps/s: skipped (the RRSSRD folders $config names are not here)"
    fi
    exit $failed
) 2>&1 | tee ${log:+"$log"}
exit "${PIPESTATUS[0]}"
