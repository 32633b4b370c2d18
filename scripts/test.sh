#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then lints and tests.
#   - Debian's `prometheus` package (promtool and the server), when missing (needs root/apt);
#   - Debian's `chromium`, when missing: the status page's browser test loads it headless;
#   - Debian's `nginx`, the benchmark's comparison server (tests/test_benchmark.py), when missing;
#   - the package with its test extras, into the active virtualenv, or into ./.venv.
# Extra arguments go to pytest (e.g. scripts/test.sh -k buckets).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  missing+=(prometheus)
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian's ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing Debian's nginx (the benchmark's comparison server)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
echo "== installing the package and its test dependencies into ${VIRTUAL_ENV}"
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e '.[test]'

echo "== ruff"
ruff check exporter tests
echo "== mypy"
mypy exporter
echo "== pytest"
python -m pytest "$@"
