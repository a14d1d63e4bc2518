#!/usr/bin/env bash
# Multi-GPU proof on one host with 2 GPUs, all through `accelerate launch` (no home-made launcher):
#  1. DDP scaling of the small preset: 1 GPU vs 2 GPUs at the same global batch (loss curves + images/s)
#  2. FSDP of the full-size zero123 preset: batch 32 per GPU, 256 px, bf16, gradient checkpointing
#  3. kill (SIGTERM) a 2-GPU run mid-way and resume it: no step lost
# Usage: OUT=out INIT=.model_init/export bash scripts/multi_gpu_check.sh
set -uo pipefail
OUT=${OUT:-out}
WORK=${WORK:-/root/mg}
INIT=${INIT:-}
STEPS=${STEPS:-200}
OBJECTS=${OBJECTS:-1000}
BATCH=${BATCH:-512}
KILL_STEPS=${KILL_STEPS:-300}
KILL_AFTER=${KILL_AFTER:-40}
WORKERS=${WORKERS:-14}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/multi_gpu.log"; }
init_args=()
[ -n "$INIT" ] && init_args=(--init-from "$INIT")

log "render small-preset data"
python3 -m zero1to3 render -o "$WORK/data64" --procedural "$OBJECTS" --views 12 --resolution 64 --workers "$WORKERS" \
  --cache-size 64 --quiet
train_small() {  # $1 = number of processes, $2 = run folder, rest = extra args
  local n=$1 dir=$2; shift 2
  local launch=(--num_processes "$n" --num_machines 1 --mixed_precision bf16 --dynamo_backend no)
  [ "$n" -gt 1 ] && launch=(--multi_gpu "${launch[@]}")
  accelerate launch "${launch[@]}" -m zero1to3 train --data "$WORK/data64" --output-dir "$dir" \
    "${init_args[@]}" --batch-size "$BATCH" --learning-rate 1e-4 --train-image-encoder --mixed-precision bf16 \
    --log-every 25 --sample-every 0 --checkpoint-every 100 "$@" 2>&1 | grep -v "it/s" | tail -3
}
log "DDP scaling: 1 GPU"
CUDA_VISIBLE_DEVICES=0 train_small 1 "$WORK/g1" --max-steps "$STEPS" --no-resume
cp "$WORK/g1/metrics.jsonl" "$OUT/ddp_1gpu.jsonl"
log "DDP scaling: 2 GPUs"
train_small 2 "$WORK/g2" --max-steps "$STEPS" --no-resume
cp "$WORK/g2/metrics.jsonl" "$OUT/ddp_2gpu.jsonl"

log "kill and resume a 2-GPU run"
rm -rf "$WORK/kill"
train_small 2 "$WORK/kill" --max-steps "$KILL_STEPS" --no-resume &
pid=$!
sleep "$KILL_AFTER"
pkill -TERM -f "output-dir $WORK/kill" ; wait $pid
log "after kill: $(ls "$WORK/kill/checkpoints")"
train_small 2 "$WORK/kill" --max-steps "$KILL_STEPS" --resume
cp "$WORK/kill/metrics.jsonl" "$OUT/kill_resume.jsonl"
log "after resume: $(ls "$WORK/kill/checkpoints")"

[ -n "${SKIP_FSDP:-}" ] && { log "FSDP skipped"; exit 0; }
log "FSDP: full-size preset, 2 GPUs, batch 32 per GPU, 256 px"
python3 -m zero1to3 render -o "$WORK/data256" --procedural 64 --views 12 --resolution 256 --workers "$WORKERS" \
  --cache-size 256 --quiet
accelerate launch --use_fsdp --num_processes 2 --num_machines 1 --mixed_precision bf16 --dynamo_backend no \
  --fsdp_sharding_strategy FULL_SHARD --fsdp_auto_wrap_policy SIZE_BASED_WRAP --fsdp_min_num_params 2000000 \
  --fsdp_use_orig_params true --fsdp_state_dict_type SHARDED_STATE_DICT --fsdp_sync_module_states true \
  -m zero1to3 train --data "$WORK/data256" --output-dir "$WORK/fsdp" --preset zero123 --batch-size 64 \
  --max-steps 40 --gradient-checkpointing --mixed-precision bf16 --log-every 10 --sample-every 0 \
  --checkpoint-every 100000 --no-resume 2>&1 | grep -v "it/s" | tail -5
cp "$WORK/fsdp/metrics.jsonl" "$OUT/fsdp_zero123.jsonl"
log "done"
