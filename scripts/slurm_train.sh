#!/usr/bin/env bash
# hfssl on several machines under SLURM, requeue-safe:
#   RECIPE=recipes/dino/imagenet.yaml OUTPUT_DIR=/shared/runs/dino sbatch --nodes 4 scripts/slurm_train.sh [key=value ...]
# One task per node; each starts its GPUs' processes with Accelerate's multi-node config
# (recipes/accelerate/multi_node_gpu_bf16.yaml), with this node's rank and the first node as the head.
# --resume-or-start makes a requeued (or resubmitted) job continue from the newest intact checkpoint
# in OUTPUT_DIR, which must be on storage every node sees (only global rank 0 writes it). Keep the
# node and GPU counts when requeueing: train.batch_size is per process, so they set the global batch
# (recipe.yaml's first lines state it) and an exact resume needs the same processes.
# At the time limit (or on scancel) SLURM sends SIGTERM, then SIGKILL after its KillWait (30 s by
# default): accelerate launch passes the SIGTERM to every process, which saves a checkpoint at the end
# of its step and exits 143 (README, "Signals"). Do not ask for --signal=USR1: Accelerate's launcher
# does not pass SIGUSR1 on, and dies of it.
#SBATCH --job-name=hfssl
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -euo pipefail

: "${RECIPE:?set RECIPE=recipes/<method>/<data>.yaml}"
: "${OUTPUT_DIR:?set OUTPUT_DIR to a run folder on storage every node sees}"
GPUS_PER_NODE="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-recipes/accelerate/multi_node_gpu_bf16.yaml}"
HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"  # sed reads it all: no SIGPIPE under pipefail
MASTER_PORT="${MASTER_PORT:-29500}"
NUM_PROCESSES=$((SLURM_NNODES * GPUS_PER_NODE))
export RECIPE OUTPUT_DIR ACCELERATE_CONFIG HEAD_NODE MASTER_PORT NUM_PROCESSES SLURM_NNODES

echo "hfssl: job ${SLURM_JOB_ID:-?} on ${SLURM_NNODES} nodes x ${GPUS_PER_NODE} processes, head ${HEAD_NODE}:${MASTER_PORT}"
# Single quotes: SLURM_NODEID is each task's own node rank, expanded on that node; the recipe
# overrides given to this script follow as the inner script's "$@", the same on every node.
srun --kill-on-bad-exit=1 bash -c 'exec accelerate launch --config_file "$ACCELERATE_CONFIG" \
    --num_machines "$SLURM_NNODES" --num_processes "$NUM_PROCESSES" --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$HEAD_NODE" --main_process_port "$MASTER_PORT" \
    -m hfssl.train "$RECIPE" --output-dir "$OUTPUT_DIR" --resume-or-start "$@"' hfssl "$@"
