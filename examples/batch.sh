#!/usr/bin/env bash
# Super-resolve every scene of a folder with references found by footprint: the job a
# user copies and adapts. Re-running it does only what is missing (outputs are
# written atomically, so an existing output is a finished one).
#
#   examples/batch.sh SCENES_DIR REFS_DIR OUT_DIR [WEIGHTS]
#
# On a cluster, add: --scheduler dask --dask-address tcp://SCHEDULER:8786
# (each scene is one Dask task; GPU workers each take one device).
set -euo pipefail
scenes=${1:?scene folder}
refs=${2:?reference folder, file or VRT}
out=${3:?output folder}
weights=${4:-}

rrsgan-geo batch "$scenes" --ref "$refs" -o "$out" \
    ${weights:+--weights "$weights"} \
    --tile 64 --batch-size 4 --device auto --on-error skip
