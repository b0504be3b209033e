#!/usr/bin/env bash
# Every GPU figure of experiments/benchmarks.md in one run: experiments/gpu_suite.py says which.
#
#   bash experiments/gpu_suite.sh [--ref DIR] [--wheels DIR] [--out experiments/gpu] [--budget-s 450]
#   bash experiments/gpu_suite.sh --smoke --out /tmp/gpu_smoke     # the same path, tiny, on a CPU
#
# --wheels DIR installs the wheels there first (into /tmp/pix2pixhd_site, put on PYTHONPATH): the
# packages a GPU image lacks (ml-collections for the configs, tensorboardX). The repository's root
# goes on PYTHONPATH, so the package runs from the checkout without being installed.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target /tmp/pix2pixhd_site "$2"/*.whl
              export PYTHONPATH="/tmp/pix2pixhd_site${PYTHONPATH:+:$PYTHONPATH}"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PYTHON" experiments/gpu_suite.py "${args[@]}"
