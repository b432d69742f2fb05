#!/usr/bin/env bash
# Run the test suite (creates the environment if needed). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
# Debian's chromium for tests/test_browser.py (a system package: installed when missing; the
# browser test skips, saying why, when it cannot be installed).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "ctsurv: installing Debian's chromium for the browser test" >&2
  { $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
    { $SUDO apt-get update >/dev/null 2>&1 &&
      $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }; } ||
    echo "ctsurv: could not install chromium; tests/test_browser.py will skip" >&2
fi
# Two workers (pytest-xdist), one file each at a time: the 240-patient pipeline module, the
# critical path, starts first on one (tests/conftest.py) while the other takes the rest.
# CTSURV_TEST_WORKERS=0 runs in one process; later arguments override these.
exec python -m pytest -q -n "${CTSURV_TEST_WORKERS:-2}" --dist loadfile "$@"
