#!/usr/bin/env bash
# Build the horovod wheel for the torch installed in PYTHON, as a CPU (gloo) or GPU (gloo + NCCL) build chosen
# here, never by what CMake happens to find on the machine.
#
#   scripts/build_horovod.sh PYTHON OUT_DIR cpu|cuda
#
# horovod 0.28.1 needs two source edits to build against torch >= 2.1 and cmake >= 4 (C++17; cmake minimums),
# and one to use the configured network interface everywhere across hosts (see below).
# A cpu build also removes Horovod's CUDA detection, because with a CUDA toolkit on the machine (nvcc, or
# CUDA_HOME) and no GPU, CMake enables CUDA and then fails on a missing cudart. A cuda build asks for NCCL
# operations and takes NCCL from the nvidia-nccl wheel that torch's CUDA build brings.
# Prints the path of the built wheel on its last line.
set -euo pipefail

PYTHON="$1"
OUT="$2"
FLAVOR="$3"
HOROVOD_VERSION=0.28.1

case "$FLAVOR" in
  cpu|cuda) ;;
  *) echo "build_horovod.sh: flavor must be cpu or cuda, got '$FLAVOR'" >&2; exit 2 ;;
esac

BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$BUILD"
tar xzf "$BUILD/horovod-$HOROVOD_VERSION.tar.gz" -C "$BUILD"
SRC="$BUILD/horovod-$HOROVOD_VERSION"

"$PYTHON" - "$SRC" "$FLAVOR" <<'PY'
"""Source edits; each must apply exactly once, so a changed release fails here rather than building wrong."""
import pathlib
import sys

src, flavor = pathlib.Path(sys.argv[1]), sys.argv[2]


def edit(relative: str, old: str, new: str) -> None:
    path = src / relative
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"build_horovod.sh: expected one {old!r} in {relative}, found {text.count(old)}")
    path.write_text(text.replace(old, new))


# torch >= 2.1 headers need C++17; the 0.28.1 release pins C++14 (fixed upstream after the release).
for relative in ("CMakeLists.txt", "horovod/torch/CMakeLists.txt"):
    edit(relative, "set(CMAKE_CXX_STANDARD 14)", "set(CMAKE_CXX_STANDARD 17)")
# cmake >= 4 refuses projects that declare a minimum below 3.5 (gloo, flatbuffers).
for relative in ("third_party/gloo/CMakeLists.txt", "third_party/flatbuffers/CMakeLists.txt"):
    edit(relative, "cmake_minimum_required(VERSION 2.8.12", "cmake_minimum_required(VERSION 3.5")
# Process sets (the global one included) make their gloo device from their own, never set, interface
# field instead of the one HOROVOD_GLOO_IFACE named, so they bind whatever the hostname resolves to: across
# hosts whose hostname is not on the training network, ranks then connect to each other's 127.0.0.1.
edit("horovod/common/gloo/gloo_context.cc",
     "  attr device_attr;\n  device_attr.iface = gloo_iface_;\n  device_attr.ai_family = AF_UNSPEC;\n"
     "  auto dev = CreateDevice(device_attr);\n\n  global_ctx = global_context.ctx;",
     "  gloo_iface_ = global_context.gloo_iface_;\n  attr device_attr;\n  device_attr.iface = gloo_iface_;\n"
     "  device_attr.ai_family = AF_UNSPEC;\n  auto dev = CreateDevice(device_attr);\n\n"
     "  global_ctx = global_context.ctx;")
if flavor == "cpu":
    text = (src / "CMakeLists.txt").read_text()
    start, end_marker = text.index("include(CheckLanguage)"), "    enable_language(CUDA)\nendif()\n"
    detection = text[start : text.index(end_marker) + len(end_marker)]
    edit("CMakeLists.txt", detection, "# seqrec: a CPU-only build; CUDA detection removed (scripts/build_horovod.sh)\n")
    edit("cmake/Modules/FindPytorch.cmake",
         "print(True if ((torch.version.cuda is not None) and (CUDA_HOME is not None)) else False)",
         "print(False)")
PY

BUILD_ENV=(HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1
           HOROVOD_WITHOUT_MXNET=1 CMAKE_POLICY_VERSION_MINIMUM=3.5 "MAKEFLAGS=-j$(nproc)")
if [ "$FLAVOR" = cuda ]; then
  NCCL_DIR=$("$PYTHON" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
  [ -n "$NCCL_DIR" ] || { echo "build_horovod.sh: a cuda build needs NCCL (the nvidia-nccl wheel of torch's CUDA build)" >&2; exit 1; }
  # the wheel ships libnccl.so.2 only; CMake's find_library looks for libnccl.so
  mkdir -p "$BUILD/nccl-lib"
  ln -s "$NCCL_DIR/lib/libnccl.so.2" "$BUILD/nccl-lib/libnccl.so"
  BUILD_ENV+=(HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_LINK=SHARED "HOROVOD_NCCL_INCLUDE=$NCCL_DIR/include"
              "HOROVOD_NCCL_LIB=$BUILD/nccl-lib" "HOROVOD_CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")")")
fi
env "${BUILD_ENV[@]}" "$PYTHON" -m pip wheel -q --no-build-isolation --no-deps "$SRC" -w "$BUILD/dist"
mkdir -p "$OUT"
BUILT=$(ls "$BUILD"/dist/horovod-*.whl)
cp "$BUILT" "$OUT/"
echo "$OUT/$(basename "$BUILT")"
