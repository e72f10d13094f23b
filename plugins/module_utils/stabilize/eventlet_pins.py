# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the app's environment needs to run gunicorn's eventlet worker (runbook 4.1/4.2): the pins of
the compatibility table (`eventlet_compat`) for the app's Python, and whether gevent/uvloop - the
runbook's async conflict - may be removed: only when neither the app nor an installed distribution
needs them."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import json
import os
import subprocess

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import eventlet_compat
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read, service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import boot

CONFLICTING = ('gevent', 'uvloop')

# Run in the app's interpreter: its version, installed versions, and which distributions require
# gevent/uvloop unconditionally (no `extra ==` marker).
ENVIRONMENT_SCRIPT = r'''
import json, re, sys
from importlib import metadata
out = {"python": "%d.%d.%d" % sys.version_info[:3], "versions": {}, "required_by": {}}
for dist in ("gunicorn", "eventlet", "greenlet", "gevent", "uvloop"):
    try:
        out["versions"][dist] = metadata.version(dist)
    except Exception:
        pass
for dist in metadata.distributions():
    name = dist.metadata["Name"] or "?"
    for req in dist.requires or []:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)", req)
        if m and m.group(1).lower() in ("gevent", "uvloop") and "extra ==" not in req:
            out["required_by"].setdefault(m.group(1).lower(), []).append(name)
print(json.dumps(out))
'''


def read_environment(python, chdir, timeout=30, run_as=None):
    """-> dict(python, versions, required_by) from the app's interpreter, run as `run_as` (an account; None: as
    we are), isolated (-I) and outside the app's directory, so no module of the app shadows one the script
    imports. Raises OSError/ValueError."""
    try:
        done = subprocess.run([python, '-I', '-c', ENVIRONMENT_SCRIPT], cwd='/', stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, check=False, **service_user.run_kwargs(run_as))
    except subprocess.TimeoutExpired:
        raise OSError('%s did not report its packages within %d s' % (python, timeout))
    if done.returncode != 0:
        raise OSError('%s could not report its packages: %s' % (python, done.stderr.decode('utf-8', 'replace')[-500:]))
    return json.loads(done.stdout.decode('utf-8', 'replace').strip().splitlines()[-1])


def imported_modules(source, filename='<app>'):
    """Top-level names of every module a source file imports (ast, never executed)."""
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names


def app_imports(chdir, app, wanted=CONFLICTING):
    """{module: [file, ...]} for the `wanted` modules the app's own source imports."""
    found = {}
    for path in boot.app_source_files(chdir, app):
        done = safe_read.read_bytes(path, safe_read.SOURCE_MAX, follow=True)   # no FIFO, device or giant
        if done.data is None or done.truncated:
            continue
        names = imported_modules(done.data, path)
        for name in wanted:
            if name in names:
                found.setdefault(name, []).append(os.path.relpath(path, chdir))
    return found


def pip_beside(python):
    """The pip of the app's interpreter (its venv's bin/pip), or None."""
    for name in ('pip', 'pip3'):
        candidate = os.path.join(os.path.dirname(python), name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def plan(python, chdir, app, requirements=None, run_as=None):
    """-> dict(python_version, versions, requirements, pip, problems, remove, keep) for the pins role."""
    env = read_environment(python, chdir, run_as=run_as)
    version = env['python']
    wanted = list(requirements or eventlet_compat.recommended_pins(version))
    imports = app_imports(chdir, app)
    remove, keep = [], []
    for name in CONFLICTING:
        if name not in env['versions']:
            continue
        users = ['%s imports it' % f for f in imports.get(name, [])] + \
            ['%s requires it' % d for d in env['required_by'].get(name, [])]
        if users:
            keep.append({'package': name, 'version': env['versions'][name], 'needed_by': users})
        else:
            remove.append(name)
    return {
        'python_version': version,
        'versions': env['versions'],
        'requirements': wanted,
        'recommended': eventlet_compat.recommended_pins(version),
        'problems': eventlet_compat.check_versions(version, env['versions']),
        'pip': pip_beside(python),
        'remove': remove,
        'keep': keep,
    }
