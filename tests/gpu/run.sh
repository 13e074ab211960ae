#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU and no network:
#
#   bash tests/gpu/run.sh OUT_DIR              # the full check, under 9 minutes
#   bash tests/gpu/run.sh --dry OUT_DIR        # the same stages, tiny sizes, on the CPU (CI)
#   bash tests/gpu/run.sh --fetch-wheels       # on a machine WITH network: fill tests/gpu/wheels
#
# 1. A virtual environment that sees the system's packages (the GPU box's own PyTorch + CUDA)
#    gets duskwatch (editable, from this checkout) and whatever else is missing, installed with
#    `pip --no-index` from the wheels carried in $DUSKWATCH_WHEELS (default tests/gpu/wheels).
#    onnxruntime-gpu is installed when its wheel is there (the ONNX Runtime CUDA tests skip
#    otherwise, and say so). --dry uses the current Python as it is and installs nothing.
#    When the wheels hold nvidia-pytriton, a second environment ($DUSKWATCH_TRITON_VENV,
#    default /tmp/duskwatch-triton-venv; PyTriton pins numpy<2) gets it with onnxruntime-gpu,
#    and the Triton stage serves the detector from its bundled server (skipped otherwise).
# 2. tests/gpu/driver.py runs every stage with its own time limit and writes every summary,
#    log and the trained checkpoint into OUT_DIR (summary.json lists them; see the driver).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wheels="${DUSKWATCH_WHEELS:-$here/wheels}"
python="${PYTHON:-python3}"
dry=0
fetch=0
out=""
for arg in "$@"; do
    case "$arg" in
        --dry) dry=1 ;;
        --fetch-wheels) fetch=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $arg (use --dry, --fetch-wheels or --help)" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done

# What the GPU box may lack (it has PyTorch, torchvision, numpy and OpenCV). One line each:
# pip requirement. ultralytics' own dependencies come along from the same folder.
requirements=(
    "setuptools>=77" "wheel" "pydantic>=2.5" "PyYAML>=6.0" "prometheus-client>=0.19"
    "onnx>=1.16" "onnxslim>=0.1.30" "ultralytics>=8.3" "tqdm>=4.66" "scikit-image>=0.22"
    "pytest>=8.0" "pytest-timeout>=2.3" "requests>=2.31" "psutil>=5.9" "onnxruntime>=1.17"
)

if [ "$fetch" = 1 ]; then
    mkdir -p "$wheels"
    # Linux x86_64, CPython 3.12 (the reference box), binary wheels only (nothing to build
    # there), with their dependencies; then the wheels the GPU box brings itself are removed
    # (PyTorch, torchvision, Triton, the NVIDIA CUDA libraries, numpy, OpenCV).
    "$python" -m pip download --only-binary=:all: --platform manylinux_2_28_x86_64 \
        --python-version 3.12 -d "$wheels" "${requirements[@]}" "openvino>=2024.0" \
        "onnxruntime-gpu>=1.20"
    # The Triton stage: the server's own environment (numpy<2) and the client.
    "$python" -m pip download --only-binary=:all: --platform manylinux_2_28_x86_64 \
        --python-version 3.12 -d "$wheels" "nvidia-pytriton==0.7.0" "numpy<2" \
        "onnxruntime-gpu>=1.20" "tritonclient[grpc,http]>=2.40"
    rm -f "$wheels"/torch-*.whl "$wheels"/torchvision-*.whl "$wheels"/triton-*.whl \
        "$wheels"/nvidia_[!p]*.whl "$wheels"/numpy-2*.whl "$wheels"/opencv_*.whl
    echo "wheels in $wheels ($(du -sh "$wheels" | cut -f1)): carry this folder to the GPU box"
    exit 0
fi

if [ -z "$out" ]; then
    echo "run.sh: give the output folder: bash tests/gpu/run.sh [--dry] OUT_DIR" >&2
    exit 2
fi
mkdir -p "$out"
start=$(date +%s)

if [ "$dry" = 1 ]; then
    py="${PYTHON:-$root/.venv/bin/python}"   # CI's environment (make venv), as it is
    [ -x "$py" ] || py="$python"
else
    venv="${DUSKWATCH_GPU_VENV:-/tmp/duskwatch-gpu-venv}"
    [ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
    py="$venv/bin/python"
    "$py" -c 'import torch' 2>/dev/null || {
        echo "run.sh: $python has no PyTorch; run with PYTHON=/path/to/the/python that has the" \
             "box's PyTorch with CUDA" >&2; exit 3; }
    pip=("$py" -m pip install --no-index --find-links "$wheels" --disable-pip-version-check -q)
    missing=$("$py" "$here/missing.py" "${requirements[@]}")
    if [ -n "$missing" ]; then
        echo "installing from $wheels: $missing" >&2
        # shellcheck disable=SC2086
        "${pip[@]}" $missing || {
            echo "run.sh: could not install: $missing. Fill $wheels on a machine with network" \
                 "(bash tests/gpu/run.sh --fetch-wheels) and carry it here" >&2; exit 3; }
    fi
    if ls "$wheels"/onnxruntime_gpu-*.whl >/dev/null 2>&1 && \
            ! "$py" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
        # The CPU build shadows the GPU one (both install the `onnxruntime` module).
        "$py" -m pip uninstall -y -q onnxruntime >/dev/null 2>&1 || true
        "${pip[@]}" --force-reinstall --no-deps onnxruntime-gpu
    fi
    if ls "$wheels"/nvidia_pytriton-*.whl >/dev/null 2>&1; then
        tvenv="${DUSKWATCH_TRITON_VENV:-/tmp/duskwatch-triton-venv}"
        [ -x "$tvenv/bin/python" ] || "$python" -m venv "$tvenv"
        "$tvenv/bin/python" -m pip install --no-index --find-links "$wheels" -q \
            --disable-pip-version-check "nvidia-pytriton==0.7.0" "numpy<2" onnxruntime-gpu && \
            "${pip[@]}" "tritonclient[grpc,http]" && export DUSKWATCH_TRITON_VENV="$tvenv" || \
            echo "run.sh: the Triton environment could not be built; its stage is skipped" >&2
    fi
    "${pip[@]}" --no-deps --no-build-isolation -e "$root" >/dev/null
    echo "install: $(( $(date +%s) - start )) s" >&2
fi

budget=$(( 530 - ($(date +%s) - start) ))
args=(--out "$out" --budget "$budget")
[ "$dry" = 1 ] && args+=(--dry --budget 300)
cd "$root"
exec "$py" "$here/driver.py" "${args[@]}"
