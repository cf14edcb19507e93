#!/usr/bin/env bash
# Chain short GPU loans into one training run of the default network (BiSIC-Fast, `wide`).
#
# Each chunk goes on from the latest weights for at most 9 minutes, then writes float16 weights
# in pieces of at most 15 MiB (the device tool brings back files of up to 16 MiB, 8 of them),
# which the next chunk joins again. Training data does not travel with the working tree unless
# packed into it, so pack a JPEG copy first (about 30 MiB, git-ignored):
#
#   scripts/gpu_train_chunk.sh pack                      # here: ../shared/data -> gpu-data/
#   # on the GPU machine (device tool, carry ["gpu-data"], and the latest pieces if any):
#   scripts/gpu_train_chunk.sh train WEIGHTS "$OUT" [SECONDS]
#
# WEIGHTS is a .safetensors file or a folder of `bisic-fast.safetensors.part-*` pieces from an
# earlier chunk. The optimiser starts afresh each chunk (100 steps of warm-up); the pieces hold
# the moving average of the weights, as shipped weights do. Batch 16 of 256x256 crops
# (PRESET, BATCH, CROP, DEVICE and DATA override the defaults, e.g. for a smoke test on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}

case "${1:-}" in
pack)
    rm -rf gpu-data && mkdir -p gpu-data
    grep -qx "/gpu-data/" .git/info/exclude 2>/dev/null || echo "/gpu-data/" >> .git/info/exclude
    "$python" - <<'PY'
from pathlib import Path
from PIL import Image
src, dst = Path("../shared/data"), Path("gpu-data")
for sub in ("photos", "stereo-train"):
    for path in sorted((src / sub).rglob("*")):
        if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}:
            continue
        out = (dst / sub / path.relative_to(src / sub)).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((1024, 1024))
            im.save(out, quality=92, subsampling=0)
PY
    du -sh gpu-data
    ;;
train)
    weights=$2; out=$3; seconds=${4:-480}
    [ "$seconds" -le 540 ] || { echo "at most 540 s (9 minutes) per chunk" >&2; exit 1; }
    work=$(mktemp -d)
    if [ -d "$weights" ]; then
        cat "$weights"/bisic-fast.safetensors.part-* > "$work/init.safetensors"
        weights=$work/init.safetensors
    fi
    data=${DATA:-gpu-data}
    # SIGTERM at the time limit finishes the step and saves a checkpoint (see `stereo-codec train`)
    timeout -s TERM "$seconds" "$python" -m stereocodec train --variant bisic-fast --preset "${PRESET:-wide}" \
        --out "$work/run" --photos "$data/photos" --stereo "$data/stereo-train" --init-from "$weights" \
        --batch "${BATCH:-16}" --crop "${CROP:-256}" --lr 1e-4 --warmup 100 --device "${DEVICE:-cuda}" --workers 8 \
        --log-every 20 --val-every 200 --checkpoint-every 200 2>&1 | tee "$out/train.log" || true
    "$python" -m stereocodec export "$work/run/checkpoint.pt" "$work/bisic-fast.safetensors" --force
    split -b 15M -d "$work/bisic-fast.safetensors" "$out/bisic-fast.safetensors.part-"
    ls -l "$out"
    ;;
*)
    echo "usage: $0 pack | train WEIGHTS OUT [SECONDS]" >&2
    exit 1
    ;;
esac
