#!/usr/bin/env bash
# Static checks, offline, exactly as CI runs them:
#   1. ansible-test sanity (--venv, the .venv's Python) on a copy of the checkout laid out as
#      ansible_collections/sre/gunicorn_doctor, so uncommitted changes are linted too;
#   2. ansible-lint --profile production from the repo root;
#   3. antsibull-changelog lint: the fragments and changelogs/changelog.yaml.
# All always run; the script exits non-zero if either fails. Runnable from any cwd.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh

# ansible-test's shellcheck sanity test silently skips itself when the program is missing.
if ! command -v shellcheck >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null
  else echo "lint: install shellcheck first (sudo apt-get install shellcheck)" >&2; exit 1; fi
fi

venv="$root/.venv"
py_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# --- ansible-test's pip bootstrap, offline ----------------------------------------------------
# ansible-test bootstraps pip in each of its venvs with get-pip-<pip version>.py downloaded from
# a host these machines cannot reach, unless ~/.ansible/test/cache/get_pip_<v>.py
# exists. This stand-in gets pip from the interpreter's own ensurepip, then installs the pinned pip
# from PyPI with the same arguments. A real get-pip.py already in the cache is left alone.
pip_version=$("$venv/bin/python" - "$py_version" <<'EOF'
import sys
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))['pip'])
EOF
)
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
marker='# offline stand-in for get-pip.py written by sre.gunicorn_doctor scripts/lint.sh'
if [ ! -e "$get_pip" ] || grep -qxF "$marker" "$get_pip"; then
  mkdir -p "$(dirname "$get_pip")"
  cat > "$get_pip.tmp" <<EOF
$marker
"""Bootstrap pip like get-pip.py would, without downloading anything but the pinned pip."""
import subprocess
import sys

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel')
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
if '--no-setuptools' in sys.argv[1:]:
    # ensurepip of Python < 3.12 also installs setuptools; get-pip.py --no-setuptools would not.
    subprocess.check_call([sys.executable, '-m', 'pip', 'uninstall', '-q', '-y', 'setuptools'])
EOF
  mv "$get_pip.tmp" "$get_pip"
fi

status=0
elapsed() { echo "lint: $1 took $(( $(date +%s) - $2 ))s" >&2; }

# --- 1. ansible-test sanity ----------------------------------------------------------------------
start=$(date +%s)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gunicorn_doctor-sanity.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
coll="$tmp/ansible_collections/sre/gunicorn_doctor"
mkdir -p "$coll"
# Tracked files plus new, not-ignored ones (what the next commit holds), as in the working tree;
# files deleted from the working tree and tests/output/ (ansible-test's own output) stay out.
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do
      case "$f" in tests/output/*) continue ;; esac
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done \
  | sort -zu | xargs -0 -r cp -P --parents -t "$coll"
(
  cd "$coll"
  git init -q
  git add -A
  # Everything runs in ansible-test's own venvs (no docker here); the requirements of each sanity
  # test come from PyPI. --python pins the one Python every machine has: the .venv's.
  "$venv/bin/ansible-test" sanity --venv --python "$py_version" --color no
) || status=1
elapsed "ansible-test sanity" "$start"

# --- 2. ansible-lint ------------------------------------------------------------------------------
# ansible-lint installs the collection it lints under ~/.ansible/collections; resolving the
# collection through .collections (-> this checkout) keeps a stale copy there from being used.
start=$(date +%s)
PATH="$venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$root/.collections" \
  "$venv/bin/ansible-lint" --profile production --offline || status=1
elapsed "ansible-lint" "$start"

# --- 3. the changelog -----------------------------------------------------------------------------
"$venv/bin/antsibull-changelog" lint || status=1
"$venv/bin/antsibull-changelog" lint-changelog-yaml changelogs/changelog.yaml || status=1

exit "$status"
