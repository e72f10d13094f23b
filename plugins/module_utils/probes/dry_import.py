# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbook's dry import (section 2.2), run in the app's own interpreter.

SCRIPT is passed to `doctor_python -c` with the app directory as cwd, so the app is imported the
way gunicorn imports it and never into Ansible's interpreter. It prints one marker line with a JSON
result. `app.run()` and `run_simple()` are replaced before the app's import (through an import
hook, so the app's own import order is untouched) with recorders, so an unguarded dev server is
reported instead of blocking the import. The same hook traces eventlet.monkey_patch(): each call
(`monkey_patch.calls`, file and line) and the networking/threading modules the app had imported
before the first one (`monkey_patch.imported_before`); `eventlet_hubs` lists the hub modules of the
installed eventlet (found, not imported). Versions are read after the app's import, so the doctor's
own imports do not hide what the app imported first.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

MARKER = '@@SRE.GUNICORN_DOCTOR.DRY_IMPORT@@'
# Printed when the app's import begins and when it returns: the caller times the import itself against the service's
# --timeout (the interpreter's own start is not the app's boot).
IMPORTING, IMPORTED = '@@SRE.GUNICORN_DOCTOR.IMPORTING@@', '@@SRE.GUNICORN_DOCTOR.IMPORTED@@'
MARKERS = (MARKER, IMPORTING, IMPORTED)

SCRIPT = r'''
import importlib, json, os, sys, time, traceback
MARKER = "@@SRE.GUNICORN_DOCTOR.DRY_IMPORT@@"
module_name, variable, healthz = sys.argv[1:4]
result = {"python": sys.version.split()[0], "executable": sys.executable, "run_calls": [],
          "versions": {}, "ok": False}
def recorder(kind):
    def run(*args, **kwargs):
        caller = traceback.extract_stack()[-2]
        result["run_calls"].append({"kind": kind, "file": caller[0], "line": caller[1]})
    return run

def read_versions():
    # After the app's import: importlib.metadata pulls in socket, threading and select, which would
    # hide what the app itself imported before eventlet.monkey_patch().
    try:
        from importlib import metadata
        for dist in ("gunicorn", "flask", "werkzeug", "eventlet", "greenlet", "gevent", "uvloop",
                     "dnspython", "flask-sock", "simple-websocket", "flask-socketio"):
            try:
                result["versions"][dist] = metadata.version(dist)
            except Exception:
                pass
    except ImportError:
        pass
    try:  # the hub modules of the installed eventlet, found without importing it
        spec = importlib.util.find_spec("eventlet")
        if spec is not None and spec.submodule_search_locations:
            hubs = os.path.join(list(spec.submodule_search_locations)[0], "hubs")
            result["eventlet_hubs"] = sorted(n[:-3] for n in os.listdir(hubs) if n.endswith(".py") and n[0] != "_")
    except Exception:
        pass

PATCH = {"flask.app": ("Flask", "run", "app.run()"), "werkzeug.serving": (None, "run_simple", "run_simple()"),
         "flask_socketio": ("SocketIO", "run", "socketio.run()")}

# eventlet.monkey_patch(): every call (file:line) and, at the first one, which networking/threading
# modules the app had imported before it (not counting what `import eventlet` itself imports).
WATCHED = ("socket", "ssl", "threading", "select", "selectors", "subprocess", "queue", "asyncio", "http",
           "urllib", "urllib3", "requests", "httpx", "httplib2", "dns", "grpc", "google", "twilio", "redis",
           "psycopg2", "pymysql", "MySQLdb", "websocket", "websockets", "botocore", "boto3", "concurrent")
TRACE = {}

def trace_eventlet(name, module):
    if name == "eventlet":
        TRACE["post_eventlet"] = set(sys.modules)
        return
    original = module.monkey_patch
    def monkey_patch(*args, **kwargs):
        caller = traceback.extract_stack()[-2]
        patched = result.setdefault("monkey_patch", {"calls": [], "imported_before": []})
        if not patched["calls"]:
            now = set(sys.modules)
            early = (TRACE.get("pre_eventlet", now) - TRACE.get("baseline", now)) | (now - TRACE.get("post_eventlet", now))
            patched["imported_before"] = sorted(set(m.split(".")[0] for m in early) & set(WATCHED))
        patched["calls"].append({"file": caller[0], "line": caller[1]})
        return original(*args, **kwargs)
    module.monkey_patch = monkey_patch

AFTER = {"eventlet": trace_eventlet, "eventlet.patcher": trace_eventlet}

class DevServerRecorder(object):
    """Meta path finder: after flask.app / werkzeug.serving load, swap their server starters (and trace
    eventlet.monkey_patch)."""
    def find_spec(self, name, path=None, target=None):
        if name not in PATCH and name not in AFTER:
            return None
        if name == "eventlet":
            TRACE["pre_eventlet"] = set(sys.modules)
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module
        def exec_module(module, original=original, name=name):
            original(module)
            if name in AFTER:
                AFTER[name](name, module)
                return
            owner, attr, kind = PATCH[name]
            target_obj = getattr(module, owner) if owner else module
            setattr(target_obj, attr, recorder(kind))
        spec.loader.exec_module = exec_module
        return spec

import importlib.util
sys.meta_path.insert(0, DevServerRecorder())
TRACE["baseline"] = set(sys.modules)
sys.stdout.write("\n@@SRE.GUNICORN_DOCTOR.IMPORTING@@\n")
sys.stdout.flush()
started = time.time()
try:
    module = importlib.import_module(module_name)
    result["import_seconds"] = round(time.time() - started, 3)
    sys.stdout.write("\n@@SRE.GUNICORN_DOCTOR.IMPORTED@@\n")
    sys.stdout.flush()
    factory = variable.endswith(")")
    name = variable.split("(")[0]
    if not hasattr(module, name):
        result["error"] = {"type": "AttributeError", "message": "module %s has no attribute %r" % (module_name, name),
                           "stage": "lookup"}
    else:
        app = getattr(module, name)
        if factory:
            app = app()
        result["app_type"] = type(app).__module__ + "." + type(app).__name__
        url_map = getattr(app, "url_map", None)
        if url_map is not None:
            result["routes"] = sorted(set(str(rule) for rule in url_map.iter_rules()))[:80]
        if hasattr(app, "test_client"):
            response = app.test_client().get(healthz)
            result["healthz_status"] = response.status_code
        result["ok"] = True
except BaseException as exc:
    result.setdefault("import_seconds", round(time.time() - started, 3))
    frames = [f for f in traceback.extract_tb(sys.exc_info()[2]) if not f[0].startswith("<frozen importlib")]
    result["error"] = {
        "type": type(exc).__name__,
        "message": str(exc)[:500],
        "stage": "import" if "app_type" not in result else "healthz",
        "frames": ["%s:%d in %s" % (f[0], f[1], f[2]) for f in frames[-6:]],
        "missing_env": exc.args[0] if isinstance(exc, KeyError) and frames and frames[-1][0] in (os.__file__, "<frozen os>")
                       and exc.args and isinstance(exc.args[0], str) else None,
        "module_not_found": getattr(exc, "name", None) if isinstance(exc, ImportError) else None,
    }
read_versions()
sys.stdout.flush()
sys.stdout.write("\n" + MARKER + json.dumps(result) + "\n")
sys.stdout.flush()
os._exit(0)  # threads the app started at import must not keep us alive
'''


def parse_output(text):
    """stdout of SCRIPT -> its result dict, or None when the marker line never came."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            import json
            return json.loads(line[len(MARKER):])
    return None
