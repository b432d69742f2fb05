#!/usr/bin/env bash
# The main job on the embedded default: generate the phantom cohort, prepare, embed, 10-fold CV.
# Usage: bash scripts/demo.sh [OUT_DIR] [extra `ctsurv demo` options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
OUT="${1:-$ROOT/demo-run}"
shift || true
exec ctsurv demo --out "$OUT" "$@"
