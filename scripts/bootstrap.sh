#!/usr/bin/env bash
# Set up everything the collection, its demo service and its tests need, on a fresh Debian
# machine with Python 3.11+. Idempotent: a second run only checks.
#   .venv/                 the controller + demo-app virtualenv (pip picks the newest
#                          ansible-core the machine's python3 can run: 2.19 on 3.11, 2.20+ on 3.12+)
#   .collections/          ansible_collections/sre/gunicorn_doctor -> this checkout
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian ships venv/ensurepip in a separate package.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else echo "bootstrap: install python3-venv first (sudo apt-get install python3-venv)" >&2; exit 1; fi
fi

stamp=.venv/.requirements.sha
want=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-test.txt
  echo "$want" > "$stamp"
fi

mkdir -p .collections/ansible_collections/sre
ln -sfn "$root" .collections/ansible_collections/sre/gunicorn_doctor
