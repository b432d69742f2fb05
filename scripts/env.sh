#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and activate it.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run repeatedly: it reinstalls only
# when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CTSURV_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "ctsurv: creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.ctsurv-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "ctsurv: installing dependencies (CPU torch 2.13.0 first, so pip never picks a CUDA build)" >&2
  python -m pip install --quiet --upgrade pip >&2
  python -m pip install --quiet "torch==2.13.0" >&2
  python -m pip install --quiet -e "$ROOT[test,radiomics,ray]" >&2
  echo "$WANT" > "$STAMP"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export MPLBACKEND=Agg
