#!/usr/bin/env bash
# Rebuild, from the installed asset packages, every data folder the default model's recipe reads:
# the corpus, its renders, and the shard folders under .data/ that travel to the GPU machine.
# Re-runs reuse what is complete (converted objects, rendered object folders); packing is redone.
#
#   bash scripts/rebuild_data.sh            # ~11 min on 2 cores (docs/data.md); CORPUS=/work/corpus DATA=.data WORKERS=2
#
# Writes (docs/data.md, "Rebuilding every pack"):
#   $DATA/train64a1..a3  view set A (seed 0) of the train split, 3 disjoint parts by a hash of the id
#   $DATA/train64b1..b3  view set B (seed 1: other cameras and lights) of the same objects, 3 parts
#   $DATA/val64v3        the val split, 12 views at 64 px
#   $DATA/test64v4       the test split: 13 reference views + 4 orbit views at 30 deg, rendered at 256 px
set -euo pipefail
CORPUS=${CORPUS:-/work/corpus}
DATA=${DATA:-.data}
WORKERS=${WORKERS:-2}
PARTS=${PARTS:-3}
R=$CORPUS/renders
M=$CORPUS/manifest.json
small=(--resolution 64 --views 12 --supersample 2 --no-msaa --workers "$WORKERS" --quiet)

zero1to3 data build --out "$CORPUS" --workers "$WORKERS"
zero1to3 render -o "$R/train64" --manifest "$M" --split train "${small[@]}"
zero1to3 render -o "$R/train64_b" --manifest "$M" --split train --seed 1 "${small[@]}"
zero1to3 render -o "$R/val64" --manifest "$M" --split val "${small[@]}"
zero1to3 render -o "$R/test256" --manifest "$M" --split test --resolution 256 --views 13 --orbit 4 \
    --orbit-elevation 30 --workers "$WORKERS" --quiet

mkdir -p "$DATA"
for k in $(seq 1 "$PARTS"); do
    zero1to3 data pack "$R/train64" -o "$DATA/train64a$k" --size 64 --part "$k/$PARTS"
    zero1to3 data pack "$R/train64_b" -o "$DATA/train64b$k" --size 64 --part "$k/$PARTS"
done
zero1to3 data pack "$R/val64" -o "$DATA/val64v3" --size 64
zero1to3 data pack "$R/test256" -o "$DATA/test64v4" --size 64
du -sh "$DATA"/train64a* "$DATA"/train64b* "$DATA/val64v3" "$DATA/test64v4"
