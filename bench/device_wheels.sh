#!/usr/bin/env bash
# Wheels for bench/device_check.sh on a GPU machine that has no network and lacks these packages: diffusers
# and tomli-w, at the versions installed here, built (for these pure-Python packages: fetched) with
# `pip wheel --no-deps` into .whl/ (ignored by git). Carry .whl/ to the GPU machine beside the checkout.
#
#   PYTHON=.venv/bin/python bash bench/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
for name in diffusers tomli-w; do
  version=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")
  rm -f .whl/"${name//-/_}"-*.whl  # one version of each: two would stop the install
  "$PY" -m pip wheel -q --no-deps -w .whl "$name==$version"
done
ls -l .whl
