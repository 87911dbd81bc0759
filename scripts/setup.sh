#!/usr/bin/env bash
# One-command setup for a fresh machine: the job environment (.venv), the Airflow environment
# (.venv-airflow), horovod built from source, Spark's Delta and S3 jars from Maven Central, and a check that
# every component imports and runs.
# Rerunnable: finished steps are skipped (the horovod wheel and the jars are cached outside the repo).
#
# Settings (environment): PYTHON (a 3.11 interpreter), SEQREC_JOB_VENV, SEQREC_AIRFLOW_VENV,
# SEQREC_WHEEL_CACHE, SEQREC_JAR_CACHE, SEQREC_TORCH_WHEELS (a folder with a torch 2.13.0 wheel to prefer to
# PyPI's), SEQREC_HOROVOD_GPU (auto | cpu | cuda), SEQREC_FORCE_SETUP=1 (reinstall).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
JOB_VENV="${SEQREC_JOB_VENV:-$ROOT/.venv}"
AIRFLOW_VENV="${SEQREC_AIRFLOW_VENV:-$ROOT/.venv-airflow}"
WHEEL_CACHE="${SEQREC_WHEEL_CACHE:-$HOME/.cache/seqrec/wheels}"
# spark.jars_dir in lake/defaults.yaml names the same folder; override both together.
JAR_CACHE="${SEQREC_JAR_CACHE:-$HOME/.cache/seqrec/jars}"
HOROVOD_VERSION=0.28.1
TORCH_VERSION=2.13.0
STEP="start"
START=$SECONDS

trap 'echo "setup FAILED at step: $STEP (see the output above)" >&2' ERR
step() { STEP="$1"; printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$1"; }

INPUTS=("$ROOT/requirements/"*.txt "$ROOT/scripts/setup.sh" "$ROOT/scripts/build_horovod.sh"
        "$ROOT/scripts/fetch_spark_jars.sh" "$ROOT/pyproject.toml" "$ROOT/lake/class_archive.py" "$ROOT/lake/class_archive_build.py")
STAMP="$JOB_VENV/.seqrec-setup-$(cat "${INPUTS[@]}" | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ -x "$AIRFLOW_VENV/bin/airflow" ] && [ "${SEQREC_FORCE_SETUP:-0}" != 1 ]; then
  echo "setup: environments are up to date ($STAMP); SEQREC_FORCE_SETUP=1 reinstalls"
  exit 0
fi

step "check prerequisites (python 3.11, java 17, a C++ compiler, cmake, maven)"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "need Python 3.11 (set PYTHON=...)" >&2; exit 1; }
command -v java >/dev/null || { echo "need a JDK 17 on PATH for Spark (apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
command -v g++ >/dev/null || { echo "need g++ to build horovod (apt-get install g++)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "need cmake to build horovod (apt-get install cmake)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "need Maven to fetch Spark's Delta and S3 jars (apt-get install maven)" >&2; exit 1; }

step "job environment: $JOB_VENV"
[ -x "$JOB_VENV/bin/python" ] || "$PYTHON" -m venv "$JOB_VENV"
JPY="$JOB_VENV/bin/python"
"$JPY" -m pip install -q --upgrade pip
# torch first and exactly. From PyPI that is the CUDA 13 build (about 3 GB with its nvidia wheels; it runs on
# the CPU too). SEQREC_TORCH_WHEELS may name a folder holding a torch 2.13.0 wheel of your own (a CPU-only
# build, a mirror): pip then prefers it, since its local version label (e.g. +cpu) sorts above PyPI's.
TORCH_SOURCE=()
if [ -n "${SEQREC_TORCH_WHEELS:-}" ]; then
  ls "$SEQREC_TORCH_WHEELS"/torch-"$TORCH_VERSION"*.whl >/dev/null 2>&1 \
    || { echo "SEQREC_TORCH_WHEELS=$SEQREC_TORCH_WHEELS holds no torch-$TORCH_VERSION wheel" >&2; exit 1; }
  TORCH_SOURCE=(--find-links "$SEQREC_TORCH_WHEELS")
fi
"$JPY" -m pip install -q "${TORCH_SOURCE[@]}" "torch==$TORCH_VERSION"
"$JPY" -m pip install -q -r "$ROOT/requirements/job.txt"
# petastorm's metadata asks for setuptools<70, which torch 2.13 (setuptools>=77) forbids; it runs fine on
# newer setuptools, so install it without its declared deps (the real ones are in requirements/job.txt).
"$JPY" -m pip install -q --no-deps petastorm==0.13.1

# Horovod's GPU operations are decided here, not by what its CMake finds: NCCL only when nvcc is on PATH,
# nvidia-smi lists a GPU and torch is a CUDA build (or SEQREC_HOROVOD_GPU=cuda asks for it); otherwise a CPU
# build (gloo) whatever CUDA files lie around. scripts/build_horovod.sh applies the decision.
TORCH_BUILD=$("$JPY" -c 'import torch; print(torch.__version__)')
TORCH_HAS_CUDA=$("$JPY" -c 'import torch; print(int(torch.version.cuda is not None))')
case "${SEQREC_HOROVOD_GPU:-auto}" in
  auto)
    HOROVOD_FLAVOR=cpu
    if command -v nvcc >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU' && [ "$TORCH_HAS_CUDA" = 1 ]; then
      HOROVOD_FLAVOR=cuda
    fi ;;
  cpu) HOROVOD_FLAVOR=cpu ;;
  cuda)
    if [ "$TORCH_HAS_CUDA" != 1 ] || ! command -v nvcc >/dev/null; then
      echo "SEQREC_HOROVOD_GPU=cuda needs nvcc on PATH and a CUDA build of torch" >&2; exit 1
    fi
    HOROVOD_FLAVOR=cuda ;;
  *) echo "SEQREC_HOROVOD_GPU must be auto, cpu or cuda, got '$SEQREC_HOROVOD_GPU'" >&2; exit 1 ;;
esac

step "horovod $HOROVOD_VERSION ($HOROVOD_FLAVOR build for torch $TORCH_BUILD), built once, cached in $WHEEL_CACHE"
# The extension is ABI-bound to the exact torch build; the flavor and the build script's source edits are part
# of what it is: all three name the cached wheel and the marker of what this venv holds.
BUILD_TAG="0torch${TORCH_BUILD//+/.}.$HOROVOD_FLAVOR.$(sha256sum "$ROOT/scripts/build_horovod.sh" | cut -c1-8)"
if "$JPY" -c "import horovod.torch" 2>/dev/null && [ -f "$JOB_VENV/.seqrec-horovod-$BUILD_TAG" ]; then
  echo "horovod already installed ($BUILD_TAG)"
else
  WHEEL=$(ls "$WHEEL_CACHE"/horovod-"$HOROVOD_VERSION"-"$BUILD_TAG"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$WHEEL" ]; then
    OUT=$(mktemp -d)
    BUILT=$(bash "$ROOT/scripts/build_horovod.sh" "$JPY" "$OUT" "$HOROVOD_FLAVOR" | tail -n 1)
    mkdir -p "$WHEEL_CACHE"
    WHEEL="$WHEEL_CACHE/$(basename "$BUILT" .whl | sed "s/^horovod-$HOROVOD_VERSION-/horovod-$HOROVOD_VERSION-$BUILD_TAG-/").whl"
    cp "$BUILT" "$WHEEL"
    rm -rf "$OUT"
  fi
  "$JPY" -m pip install -q --no-deps --force-reinstall "$WHEEL"
  rm -f "$JOB_VENV"/.seqrec-horovod-*
  touch "$JOB_VENV/.seqrec-horovod-$BUILD_TAG"
fi
"$JPY" - "$HOROVOD_FLAVOR" <<'PY'
import sys

import horovod.torch as hvd

flavor = sys.argv[1]
assert hvd.gloo_built(), "horovod was built without gloo"
assert bool(hvd.nccl_built()) == (flavor == "cuda"), f"horovod's NCCL support does not match its {flavor} build"
print(f"horovod: gloo, {'NCCL' if hvd.nccl_built() else 'no NCCL'} ({flavor} build)")
PY

step "Spark jars (Delta, hadoop-aws) from Maven Central into $JAR_CACHE"
bash "$ROOT/scripts/fetch_spark_jars.sh" "$ROOT/requirements/spark-jars.txt" "$JAR_CACHE"

step "seqrec package (editable) in the job environment"
"$JPY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"

step "JVM class archive for the drivers (lake/class_archive.py: every stage's JVM starts sooner)"
"$JPY" -m lake.class_archive_build

step "Airflow environment: $AIRFLOW_VENV"
[ -x "$AIRFLOW_VENV/bin/python" ] || "$PYTHON" -m venv "$AIRFLOW_VENV"
"$AIRFLOW_VENV/bin/python" -m pip install -q --upgrade pip
"$AIRFLOW_VENV/bin/python" -m pip install -q -r "$ROOT/requirements/airflow.txt"

step "verify: every component imports and runs"
"$JPY" - <<'PY'
import deltalake, horovod.torch, mlflow, petastorm, pyarrow, pyspark, torch
print(f"torch {torch.__version__} | pyspark {pyspark.__version__} | pyarrow {pyarrow.__version__} | "
      f"deltalake {deltalake.__version__} | petastorm {petastorm.__version__} | mlflow {mlflow.__version__}")
PY
"$JOB_VENV/bin/horovodrun" --check-build | grep -E "PyTorch|Gloo" | head -3
"$AIRFLOW_VENV/bin/airflow" version
"$JOB_VENV/bin/seqrec" --help >/dev/null
rm -f "$JOB_VENV"/.seqrec-setup-*
touch "$STAMP"
echo "setup OK in $((SECONDS - START)) s: job env $JOB_VENV, airflow env $AIRFLOW_VENV"
