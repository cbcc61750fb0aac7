#!/usr/bin/env bash
# One short GPU window of training, prepared here and run there in one call: train
# CONFIG for MINUTES (`--max-minutes`: it stops at a step boundary, saves and exports),
# leave what must come back under $OUT (the log, the export split into parts small
# enough for the trip by `split_safetensors.py`, put back together with its join
# script), then score the export on the places the config held out (JSON there too).
#
#   bash examples/train/gpu_window.sh CONFIG MINUTES DATA_ROOT [SPLITTER]
#
# DATA_ROOT holds the RRSSRD folders the config names (val_1st, val_2nd: HR, LR and
# google_Ref are enough), copied beside the checkout since ../shared is not there; the
# config is run from a copy whose data lines point at them (exports record only a
# folder's last two parts, never a local path). `rrsgan-geo` must be on PATH (the GPU
# machine's install script, or `pip install --no-deps` of the checkout).
set -euo pipefail
config=$(realpath "$1")
minutes=$2
data_root=$(realpath "$3")
splitter=${4:-}
out=${OUT:-/tmp/gpu_window}
mkdir -p "$out"

run_config="$(dirname "$config")/.window_$(basename "$config")"
sed -E "s#^(  - ).*/([^/]+)\$#\1$data_root/\2#" "$config" > "$run_config"
trap 'rm -f "$run_config"' EXIT
grep -E '^  - ' "$run_config"

# The installed command (from the checkout, `python3 -m` would find the source tree).
# The log without the progress bar's redraws; a failed run stops here.
rrsgan-geo train "$run_config" --device "${DEVICE:-cuda}" --max-minutes "$minutes" 2>&1 \
    | stdbuf -oL tr '\r' '\n' | { grep --line-buffered -v -E '^ *[0-9]+%\|' || true; } \
    | tee "$out/train.log"
export_file=$(sed -n 's/^output_dir: //p' "$config")
export_file="$(dirname "$config")/$export_file/latest.safetensors"
[ -f "$export_file" ] || { echo "no export at $export_file"; exit 1; }
if [ -n "$splitter" ]; then
    python3 "$splitter" "$export_file" "$out/weights"
else
    cp "$export_file" "$out/"
fi
# The weights are safe under $OUT before the scoring starts.
rrsgan-geo evaluate "$data_root"/val_1st "$data_root"/val_2nd --weights "$export_file" \
    --held-out "$run_config" --device "${DEVICE:-cuda}" --json "$out/eval.json" 2>&1 \
    | stdbuf -oL tr '\r' '\n' | { grep --line-buffered -v '^evaluating:' || true; } \
    | tee "$out/eval.log"
ls -l "$out" "$out"/weights 2>/dev/null || true
