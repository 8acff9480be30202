#!/usr/bin/env bash
# The GPU check of issue 13 in one go (at most 8 minutes on one H200, the install included): installs what
# the GPU machine lacks from the wheels in .whl/ (diffusers, tomli-w: see bench/device_wheels.sh), then runs
# bench/device_check.py with the arguments given. Results: stdout, bench-output/device-check/ and $OUT.
#
#   bash bench/device_wheels.sh                  # where pip reaches PyPI: the wheels into .whl/
#   bash bench/device_check.sh                   # on the GPU machine (.whl/ carried along)
#   bash bench/device_check.sh --tiny            # anywhere: every step at toy sizes (a CPU minute)
#
# PYTHON picks the interpreter (default python3). DEVICE_CHECK_INSTALL=always installs from .whl/ even when
# the packages are importable (to check the wheels themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
site=${DEVICE_CHECK_SITE:-/tmp/modellock-device-site}
if [ "${DEVICE_CHECK_INSTALL:-auto}" = always ] || ! "$PY" -c "import diffusers, tomli_w" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: diffusers or tomli-w is missing and .whl/ holds no wheels: run bench/device_wheels.sh where" \
         "pip reaches PyPI and bring .whl/ along" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed from .whl/: $(cd .whl && ls *.whl | tr '\n' ' ')"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" bench/device_check.py "$@"
