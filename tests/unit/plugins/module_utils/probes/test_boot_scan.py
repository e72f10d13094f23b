"""probes/boot.py scan_source: a dev server (app.run()) reachable when gunicorn imports the app."""

import textwrap

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import boot

HEAD = textwrap.dedent("""\
    import os
    import subprocess
    from flask import Flask
    from flask_socketio import SocketIO

    app = Flask(__name__)
    socketio = SocketIO(app)
    DEBUG = os.environ.get("DEBUG") == "1"


    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}
    """)
HEAD_LINES = HEAD.count("\n")


def scan(body):
    """Scan HEAD + body; -> [(line relative to body, code)]."""
    hits = boot.scan_source(HEAD + textwrap.dedent(body), "AgentLocator/main.py")
    assert all(h["file"] == "AgentLocator/main.py" for h in hits)
    return [(h["line"] - HEAD_LINES, h["code"]) for h in hits]


FLAGGED = {
    "module level": ('app.run(host="0.0.0.0", port=5000)\n', 1, "app.run(...)"),
    "under if DEBUG": ("if DEBUG:\n    app.run(debug=True)\n", 2, "app.run(...)"),
    "under if env": ('if os.environ.get("DEV"):\n    pass\nelif True:\n    app.run()\n', 4, "app.run(...)"),
    "in try": ("try:\n    app.run()\nexcept OSError:\n    pass\n", 2, "app.run(...)"),
    "in except": ("try:\n    import eventlet\nexcept ImportError:\n    app.run()\n", 4, "app.run(...)"),
    "socketio.run(app)": ('socketio.run(app, host="0.0.0.0", port=5000)\n', 1, "socketio.run(...)"),
    "else of a main guard": ('if __name__ == "__main__":\n    pass\nelse:\n    app.run()\n', 4, "app.run(...)"),
    "in a with block": ("with app.app_context():\n    app.run()\n", 2, "app.run(...)"),
    "run_simple": ('from werkzeug.serving import run_simple\nrun_simple("0.0.0.0", 5000, app)\n', 2,
                   "run_simple(...)"),
}


@pytest.mark.parametrize("body, line, code", FLAGGED.values(), ids=FLAGGED.keys())
def test_dev_server_reachable_at_import_is_flagged(body, line, code):
    hits = scan(body)
    assert (line, code) in hits
    assert set(hits) == {(line, code)}


NOT_FLAGGED = {
    "main guard": 'if __name__ == "__main__":\n    app.run(host="0.0.0.0", port=5000)\n',
    "main guard reversed": "if '__main__' == __name__:\n    socketio.run(app)\n",
    "main guard with else": 'if __name__ == "__main__":\n    app.run()\nelse:\n    print("imported")\n',
    "inside a def": "def main():\n    app.run()\n",
    "inside an async def": "async def serve():\n    app.run()\n",
    "inside a class": "class Server:\n    def start(self):\n        app.run()\n",
    "in a lambda": "start = lambda: app.run()\n",
    "subprocess.run": 'subprocess.run(["git", "rev-parse", "HEAD"], check=True)\n',
    "asyncio.run": "import asyncio\nasync def main():\n    pass\nasyncio.run(main())\n",
    "another object's run": "scheduler.run()\nthread.run()\n",
}


@pytest.mark.parametrize("body", NOT_FLAGGED.values(), ids=NOT_FLAGGED.keys())
def test_no_dev_server_at_import(body):
    assert scan(body) == []


@pytest.mark.parametrize("body", [
    # (a regression: the scan once walked a Try node after recursing into it, reporting each call twice)
    "try:\n    app.run()\nexcept OSError:\n    pass\n",
    "try:\n    import eventlet\nexcept ImportError:\n    app.run()\n",
    "try:\n    pass\nfinally:\n    app.run()\n",
    "for _ in range(1):\n    app.run()\n",
    "while True:\n    app.run()\n    break\n",
])
def test_each_call_is_reported_once(body):
    assert len(scan(body)) == 1


def test_syntax_error_is_reported_not_raised():
    hits = boot.scan_source("app = Flask(__name__\n", "AgentLocator/main.py")
    assert len(hits) == 1
    assert hits[0]["syntax_error"] is True
    assert hits[0]["code"].startswith("SyntaxError: ")
    assert hits[0]["file"] == "AgentLocator/main.py"


def test_bytes_source_is_accepted():
    assert [h["line"] for h in boot.scan_source(b"from flask import Flask\napp = Flask(__name__)\napp.run()\n")] == [3]


def test_scan_dev_server_calls_walks_the_app_package(tmp_path):
    pkg = tmp_path / "AgentLocator"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text("from flask import Flask\napp = Flask(__name__)\napp.run(port=5000)\n")
    (pkg / "cli.py").write_text("from .main import app\nif __name__ == '__main__':\n    app.run()\n")
    (pkg / "tests" / "test_app.py").write_text("app.run()\n")  # tests/ is skipped
    hits = boot.scan_dev_server_calls(str(tmp_path), "AgentLocator.main:app")
    assert hits == [{"file": "AgentLocator/main.py", "line": 3, "code": "app.run(...)"}]


def test_scan_dev_server_calls_single_module(tmp_path):
    (tmp_path / "wsgi.py").write_text("from flask import Flask\napplication = Flask(__name__)\napplication.run()\n")
    assert boot.scan_dev_server_calls(str(tmp_path), "wsgi") == [
        {"file": "wsgi.py", "line": 3, "code": "application.run(...)"}]
