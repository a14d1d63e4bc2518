#!/usr/bin/env bash
# One device-machine call of the default-model recipe (docs/model_card.md): unpack the carried GL loaders
# and wheels, train (resumable), export, evaluate on the test split.
# Carried (ignored) folders: .gl (EGL loader .debs), .whl (diffusers, trimesh, moderngl wheels),
# .data/{train64,val64,test64,seg128,bg} (shard folders from `zero1to3 data pack`, background packs; the
# held-out ones named by VAL / TEST) and
# .data/init (an exported model to continue: INIT=$WORK/data/init, also in later calls without re-carrying it).
# Carried data is staged under $WORK/data, so a later call on the same (warm) machine finds it without
# carrying it again, and training resumes from $WORK/run (checkpoint and optimizer) when that exists.
# Usage on the device machine: MINUTES=7 bash scripts/gpu_job.sh ; extra trainer flags in TRAIN_ARGS;
# INIT: the model to start from (default: the shipped one); SEGMENTER_CMD: a command run beside training;
# VAL / TEST: the held-out packs (default val64 / test64); EVAL_INIT_VAL=1: score INIT on VAL first.
set -uo pipefail
WORK=${WORK:-/root/z123}
# $OUT brings back at most 8 files: the job writes into $LOGS and packs it (model parts stay separate).
FINAL=${OUT:-out}
OUT=$WORK/call_$(date +%H%M%S)
mkdir -p "$OUT" "$FINAL"
pack() { mv "$OUT"/model.tgz.* "$FINAL"/ 2>/dev/null; tar czf "$FINAL/logs.tgz" -C "$OUT" .; }
trap pack EXIT
MINUTES=${MINUTES:-7}
TRAIN_ARGS=${TRAIN_ARGS:-}
EVAL_LIMIT=${EVAL_LIMIT:-0}
INIT=${INIT:-src/zero1to3/weights/tiny}
# training shard folders under .data, space-separated: a set too large for one call travels in two back-to-back
# calls, each with the same TRAIN (it names what is staged and trained on): docs/training.md, "More data than
# one device call carries", has the recipe for all training objects
TRAIN=${TRAIN:-train64}
# held-out packs by name: val64v2 / test64v3 are the corrected renders (docs/data.md); the old names stay the
# default so earlier rows can be reproduced
VAL=${VAL:-val64}
TEST=${TEST:-test64}
source scripts/device_env.sh
# shellcheck disable=SC2086
stage_data $TRAIN "$VAL" "$TEST" seg128 bg init  # init: a model to continue (INIT=$WORK/data/init)
echo "staged data: $(ls "$WORK/data" | tr '\n' ' ')" | tee "$OUT/staged.txt"
if [ -d .gl ]; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi  # only to render on this machine
install_wheels || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -n "${SEGMENTER_CMD:-}" ]; then  # the segmenter trains beside the diffusion model on the same GPU
  (eval "$SEGMENTER_CMD" > "$OUT/segmenter.log" 2>&1; echo "segmenter rc $?" >> "$OUT/segmenter.log") &
fi
if [ "${EVAL_INIT_VAL:-0}" = "1" ]; then  # the starting model on the held-out pack (a baseline row)
  python3 scripts/train_default_model.py --eval-only --init-from "$INIT" --val-data "$WORK/data/$VAL" \
    --eval-limit 120 --work "$WORK" --out "$OUT/init_val" > "$OUT/init_val.log" 2>&1
  echo "init val eval rc $?" >> "$OUT/init_val.log"
fi
train_dirs=()
missing=()
for t in $TRAIN; do if [ -d "$WORK/data/$t" ]; then train_dirs+=("$WORK/data/$t"); else missing+=("$t"); fi; done
echo "training data: ${train_dirs[*]}" | tee -a "$OUT/staged.txt"
if [ "$MINUTES" != "0" ] && [ ${#missing[@]} -gt 0 ]; then  # a cold machine lost what earlier calls staged
  echo "not staged on this machine: ${missing[*]} (carry them, or leave them out of TRAIN)" | tee -a "$OUT/staged.txt" >&2
  exit 1
fi
if [ "$MINUTES" != "0" ]; then
  python3 scripts/train_default_model.py --work "$WORK" --out "$OUT" --minutes "$MINUTES" \
    --data "${train_dirs[@]}" --val-data "$WORK/data/$VAL" --init-from "$INIT" $TRAIN_ARGS \
    2>&1 | grep -v "it/s\]" > "$OUT/train.log"
fi
model=$WORK/export
[ -d "$model" ] || model=$INIT
if [ -d "$WORK/data/$TEST" ] && [ "${SKIP_TEST:-0}" = "0" ]; then
  rm -rf "$WORK/test64" "$WORK/eval"
  python3 -c "from zero1to3.data.shards import unpack_shards; print(unpack_shards('$WORK/data/$TEST', '$WORK/test64'))"
  limit=(); [ "$EVAL_LIMIT" != "0" ] && limit=(--limit "$EVAL_LIMIT")
  python3 -m zero1to3 eval nvs --data "$WORK/test64" --model "$model" --protocol random --input-view 0 \
    --targets 12 --samples 1 --steps 50 -o "$WORK/eval" --no-progress "${limit[@]}" > "$OUT/eval.log" 2>&1
  echo "eval rc $?" >> "$OUT/eval.log"
  tar czf "$OUT/eval.tgz" -C "$WORK" eval
fi
wait
echo "job done"
