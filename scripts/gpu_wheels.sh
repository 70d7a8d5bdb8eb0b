#!/usr/bin/env bash
# Wheels of what jaxdqn needs beyond the device machine's image, downloaded here into .whl/
# (ignored by git), for a machine that cannot reach PyPI.
#
#   bash scripts/gpu_wheels.sh            # then, on the device machine, in the repo's root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && bash scripts/gpu_check.sh $OUT
#
# The H200 image (see the device tool's KINDS.md) holds jax 0.11.2 with its CUDA 13 plugin, flax,
# optax, chex, numpy, matplotlib, seaborn, six, tqdm, imageio, hypothesis, pytest, pytest-xdist
# and pytest-timeout, on Python 3.12. It lacks gymnax and Gymnasium (needed), and tensorboardX and
# MinAtar (tests that need them skip without them). jaxdqn itself runs from the checkout
# (PYTHONPATH), uninstalled. About 1.7 MB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  gymnax==1.0.1 gymnasium==1.3.0 farama-notifications==0.0.6 tensorboardX==2.6.5 \
  minatar==1.0.15 pytz
ls -l .whl
