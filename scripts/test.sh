#!/usr/bin/env bash
# All the tests: unit, integration (real gunicorn services and real faults, run through the real
# playbooks), then ansible-test sanity and ansible-lint. CI runs exactly this (.ci/run).
# Needs root for the fault tests that mount a tmpfs; everything listens on loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh

# util-linux (prlimit, mount) and procps are on every Debian; install them if a slim image lacks them.
missing=()
for tool in prlimit mount ps; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq util-linux mount procps >/dev/null
fi
# nginx (the TLS proxy of the external-layer tests) is installed by its fixture, which keeps the
# package from starting a system nginx: tests/integration/tls_proxy.py.

# Two test files at a time (pytest-xdist; tests/conftest.py keeps a file's tests together and in order on one
# worker, and the files that run stabilize or a supervisord one after another): most of an integration test's
# time is spent waiting for real services, so two at once take ~60 % of the time on 2 cores (19 min, not 31).
# Not more: the tests that time real deadlines need the machine's CPU. `-n 0` (an argument) runs one at a time.
.venv/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadfile tests/unit tests/integration "$@"
bash scripts/lint.sh
