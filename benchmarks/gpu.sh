#!/usr/bin/env bash
# The GPU checks of issue 20, for a machine with an NVIDIA GPU, nvcc, and this repository.
#
#   bash benchmarks/gpu.sh [WORK]        # WORK defaults to /tmp/seqrec-gpu; logs and JSON land there
#
# 1. setup with Horovod's CUDA build (SEQREC_HOROVOD_GPU=cuda: NCCL, refused without nvcc or a CUDA torch),
#    unless .venv already holds one; needs PyPI and Maven Central, as scripts/setup.sh always does;
# 2. the CUDA and NCCL code paths: a Horovod world of every GPU trains one epoch of the shipped sample with
#    NCCL allreduce (`seqrec train`; the trainer puts each rank on its GPU), then `seqrec score` with
#    score.device: cuda;
# 3. SASRec on Amazon Games to the paper's figure (HR@10 0.7410, NDCG@10 0.5360, sampled100), timed;
# 4. scoring 1M users x 1M items: exact on the GPU against serve.retrieval: ivf (benchmarks/large_catalogue.py).
#
# Not run yet: no GPU machine was lent to the work that wrote it (docs/benchmarks.md says so).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/seqrec-gpu}
mkdir -p "$WORK"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$WORK/gpu.log"; }

nvidia-smi -L | tee "$WORK/gpus.txt"
command -v nvcc >/dev/null || { echo "nvcc is not on PATH: Horovod's NCCL build needs the CUDA toolkit" >&2; exit 1; }
GPUS=$(nvidia-smi -L | grep -c '^GPU')

if ! .venv/bin/python -c 'import horovod.torch as h, sys; sys.exit(0 if h.nccl_built() else 1)' 2>/dev/null; then
  log "setup: torch (CUDA build from PyPI), Horovod with NCCL"
  SEQREC_HOROVOD_GPU=cuda SEQREC_FORCE_SETUP=1 bash scripts/setup.sh 2>&1 | tee "$WORK/setup.log"
fi
.venv/bin/python - <<'PY' | tee -a "$WORK/gpu.log"
import horovod.torch as hvd
import torch
assert torch.cuda.is_available(), "torch sees no GPU"
assert hvd.nccl_built(), "horovod was built without NCCL"
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; horovod NCCL built")
PY

log "CUDA/NCCL paths: ${GPUS} rank(s) train the shipped sample, then score it on the GPU"
SAMPLE="$WORK/sample"
DAYS="2017-11-25 2017-11-26 2017-11-27 2017-11-28 2017-11-29 2017-11-30 2017-12-01 2017-12-02 2017-12-03"
DS=2017-12-03
{ cat scripts/sample_config.yaml; cat <<EOF
lake: {root: $SAMPLE/lake, mlflow_tracking_uri: "sqlite:///$SAMPLE/mlflow.db",
       mlflow_artifact_root: $SAMPLE/artifacts, reports_dir: $SAMPLE/reports}
train: {epochs: 1, num_proc: $GPUS}
score: {device: cuda}
EOF
} > "$WORK/sample.yaml"
export SEQREC_CONFIG="$WORK/sample.yaml"
for day in $DAYS; do
  .venv/bin/seqrec ingest --ds "$day" --source tests/fixtures/taobao_sample.csv >>"$WORK/sample.log" 2>&1
done
.venv/bin/seqrec featurize --ds "$DS" >>"$WORK/sample.log" 2>&1
HOROVOD_LOG_LEVEL=info NCCL_DEBUG=INFO .venv/bin/seqrec train --ds "$DS" 2>>"$WORK/sample.log" | tee "$WORK/train.out"
grep -q "NCCL INFO" "$WORK/sample.log" && log "NCCL ran in training" || log "NCCL did not run in training"
VERSION=$(tail -1 "$WORK/train.out" | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["model_version"])')
.venv/bin/seqrec gate --ds "$DS" --model "$VERSION" 2>&1 | tee -a "$WORK/sample.log"
.venv/bin/seqrec score --ds "$DS" --model "$VERSION" 2>&1 | tee -a "$WORK/sample.log"
unset SEQREC_CONFIG

log "SASRec on Amazon Games (the paper's figure), timed"
/usr/bin/time -v .venv/bin/python benchmarks/amazon_games.py --work "$WORK/amazon" --models sasrec-2 --extras without \
  --out "$WORK/amazon_games.json" 2>&1 | tee "$WORK/amazon.log"

log "1M users x 1M items: exact on the GPU against ivf (the projection's users: 1M)"
.venv/bin/python benchmarks/large_catalogue.py --device cuda --items 1000000 --users 65536 \
  --users-per-batch 4096 --out "$WORK/large_catalogue_cuda.json" 2>&1 | tee "$WORK/large_catalogue.log"
log "done: $WORK"
