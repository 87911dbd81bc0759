#!/usr/bin/env bash
# One-command setup for a fresh machine: the job environment (.venv), the Airflow environment
# (.venv-airflow), horovod built from source, and a check that every component imports and runs.
# Rerunnable: finished steps are skipped (the horovod wheel is cached outside the repo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
JOB_VENV="${SEQREC_JOB_VENV:-$ROOT/.venv}"
AIRFLOW_VENV="${SEQREC_AIRFLOW_VENV:-$ROOT/.venv-airflow}"
WHEEL_CACHE="${SEQREC_WHEEL_CACHE:-$HOME/.cache/seqrec/wheels}"
HOROVOD_VERSION=0.28.1
TORCH_VERSION=2.13.0
STEP="start"
START=$SECONDS

trap 'echo "setup FAILED at step: $STEP (see the output above)" >&2' ERR
step() { STEP="$1"; printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$1"; }

STAMP="$JOB_VENV/.seqrec-setup-$(cat "$ROOT/requirements/"*.txt "$ROOT/scripts/setup.sh" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ -x "$AIRFLOW_VENV/bin/airflow" ] && [ "${SEQREC_FORCE_SETUP:-0}" != 1 ]; then
  echo "setup: environments are up to date ($STAMP); SEQREC_FORCE_SETUP=1 reinstalls"
  exit 0
fi

step "check prerequisites (python 3.11, java 17, a C++ compiler, cmake)"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "need Python 3.11 (set PYTHON=...)" >&2; exit 1; }
command -v java >/dev/null || { echo "need a JDK 17 on PATH for Spark (apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
command -v g++ >/dev/null || { echo "need g++ to build horovod (apt-get install g++)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "need cmake to build horovod (apt-get install cmake)" >&2; exit 1; }

step "job environment: $JOB_VENV"
[ -x "$JOB_VENV/bin/python" ] || "$PYTHON" -m venv "$JOB_VENV"
JPY="$JOB_VENV/bin/python"
"$JPY" -m pip install -q --upgrade pip
# torch first and exactly: this version is a CPU wheel on local disk; any other pulls a CUDA build.
"$JPY" -m pip install -q "torch==$TORCH_VERSION"
"$JPY" -m pip install -q -r "$ROOT/requirements/job.txt"
# petastorm's metadata asks for setuptools<70, which torch 2.13 (setuptools>=77) forbids; it runs fine on
# newer setuptools, so install it without its declared deps (the real ones are in requirements/job.txt).
"$JPY" -m pip install -q --no-deps petastorm==0.13.1

step "horovod $HOROVOD_VERSION (torch + gloo), built from source once and cached in $WHEEL_CACHE"
if "$JPY" -c "import horovod.torch" 2>/dev/null; then
  echo "horovod already installed"
else
  mkdir -p "$WHEEL_CACHE"
  WHEEL=$(ls "$WHEEL_CACHE"/horovod-"$HOROVOD_VERSION"-*torch"$TORCH_VERSION"*.whl 2>/dev/null | head -1 || true)
  if [ -z "$WHEEL" ]; then
    BUILD=$(mktemp -d)
    "$JPY" -m pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$BUILD"
    tar xzf "$BUILD/horovod-$HOROVOD_VERSION.tar.gz" -C "$BUILD"
    SRC="$BUILD/horovod-$HOROVOD_VERSION"
    # torch >= 2.1 headers need C++17; the 0.28.1 release pins C++14 (fixed upstream after the release).
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$SRC/CMakeLists.txt" "$SRC/horovod/torch/CMakeLists.txt"
    # cmake >= 4 refuses projects that declare a minimum below 3.5 (gloo, flatbuffers).
    sed -i 's/cmake_minimum_required(VERSION 2.8.12/cmake_minimum_required(VERSION 3.5/' \
      "$SRC/third_party/gloo/CMakeLists.txt" "$SRC/third_party/flatbuffers/CMakeLists.txt"
    GPU_OPS=()
    if command -v nvcc >/dev/null && nvidia-smi >/dev/null 2>&1; then GPU_OPS=(HOROVOD_GPU_OPERATIONS=NCCL); fi
    env HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
        HOROVOD_WITHOUT_MXNET=1 CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS="-j$(nproc)" "${GPU_OPS[@]}" \
        "$JPY" -m pip wheel -q --no-build-isolation --no-deps "$SRC" -w "$BUILD/dist"
    BUILT=$(ls "$BUILD"/dist/horovod-*.whl)
    # the torch version goes into the cached name: the extension is ABI-bound to the torch it was built with.
    WHEEL="$WHEEL_CACHE/$(basename "$BUILT" .whl | sed "s/^horovod-$HOROVOD_VERSION-/horovod-$HOROVOD_VERSION-0torch$TORCH_VERSION-/").whl"
    cp "$BUILT" "$WHEEL"
    rm -rf "$BUILD"
  fi
  "$JPY" -m pip install -q --no-deps "$WHEEL"
fi

step "seqrec package (editable) in the job environment"
"$JPY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"

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
