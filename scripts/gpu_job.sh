#!/usr/bin/env bash
# One device-machine call of the default-model recipe (docs/model_card.md): unpack the carried GL loaders
# and wheels, train (resumable: --init-from the shipped weights), export, evaluate on the test split.
# Carried (ignored) folders: .gl (EGL loader .debs), .whl (diffusers, trimesh, moderngl wheels),
# .data/{train64,val64,test64} (shard folders from `zero1to3 data pack`).
# Usage on the device machine: MINUTES=7 bash scripts/gpu_job.sh ; extra trainer flags in TRAIN_ARGS.
set -uo pipefail
OUT=${OUT:-out}
WORK=${WORK:-/root/z123}
MINUTES=${MINUTES:-7}
TRAIN_ARGS=${TRAIN_ARGS:-}
EVAL_LIMIT=${EVAL_LIMIT:-0}
mkdir -p "$OUT" "$WORK"
if [ -d .gl ]; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi  # only to render on this machine
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -n "${SEGMENTER_CMD:-}" ]; then  # the segmenter trains beside the diffusion model on the same GPU
  (eval "$SEGMENTER_CMD" > "$OUT/segmenter.log" 2>&1; echo "segmenter rc $?" >> "$OUT/segmenter.log") &
fi
if [ "$MINUTES" != "0" ]; then
  python3 scripts/train_default_model.py --work "$WORK" --out "$OUT" --minutes "$MINUTES" \
    --data .data/train64 --val-data .data/val64 --init-from src/zero1to3/weights/tiny $TRAIN_ARGS \
    2>&1 | grep -v "it/s\]" > "$OUT/train.log"
fi
model=$WORK/export
[ -d "$model" ] || model=src/zero1to3/weights/tiny
if [ -d .data/test64 ]; then
  python3 -c "from zero1to3.data.shards import unpack_shards; print(unpack_shards('.data/test64', '$WORK/test64'))"
  limit=(); [ "$EVAL_LIMIT" != "0" ] && limit=(--limit "$EVAL_LIMIT")
  python3 -m zero1to3 eval nvs --data "$WORK/test64" --model "$model" --protocol random --input-view 0 \
    --targets 12 --samples 1 --steps 50 -o "$WORK/eval" --no-progress "${limit[@]}" > "$OUT/eval.log" 2>&1
  echo "eval rc $?" >> "$OUT/eval.log"
  tar czf "$OUT/eval.tgz" -C "$WORK" eval
fi
wait
echo "job done"
