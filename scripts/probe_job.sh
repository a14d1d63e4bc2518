#!/usr/bin/env bash
# One device-machine call of scripts/probe_pose_learning.py: several variants side by side on one GPU.
# Carried: .whl (diffusers wheel), .data/train64 and .data/val64 (shards; staged under $WORK/data, so a later
# call on the same warm machine needs no re-carry). VARIANTS: ";"-separated "NAME [flags]"; MINUTES each.
# Brings back OUT/NAME.jsonl per variant and OUT/logs.tgz.
set -uo pipefail
WORK=${WORK:-/root/z123}
OUT=${OUT:-out}
MINUTES=${MINUTES:-6}
SEGMENTS=${SEGMENTS:-4}
TRAIN=${TRAIN:-train64}  # a smaller pack (e.g. train64s) when the carry limit needs it
VARIANTS=${VARIANTS:-"control;t2 --timestep-power 2;near3 --near-view-candidates 3"}
mkdir -p "$WORK/logs" "$OUT"
source scripts/device_env.sh
stage_data "$TRAIN" val64
install_wheels || exit 1
IFS=';' read -ra list <<< "$VARIANTS"
for v in "${list[@]}"; do
  set -- $v
  python3 scripts/probe_pose_learning.py --name "$@" --data "$WORK/data/$TRAIN" --val-data "$WORK/data/val64" \
    --work "$WORK/probe" --out "$OUT" --minutes "$MINUTES" --segments "$SEGMENTS" --export \
    > "$WORK/logs/$1.log" 2>&1 &
done
wait
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader > "$WORK/logs/gpu.txt"
tar czf "$OUT/logs.tgz" -C "$WORK" logs
echo "probe done"
