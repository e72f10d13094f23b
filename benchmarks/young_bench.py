"""Time diagnose.yml on young and settled services of each kind, and print a Markdown table.

    .venv/bin/python benchmarks/young_bench.py [--window 15] [--kinds healthy,flapping,...]

For each kind a real service is started on a free loopback port (stopped by PID at the end): healthy, flapping (a
shell loop that starts a new master beside the old one and SIGTERMs the old every 8 s: /healthz stays 200), slow
boot (an import of 20 s under --timeout 5), worker timeout (two sync workers, --timeout 5, a client stuck in a slow
route), import error and eventlet crash loop (a shell keep-alive loop restarting a gunicorn that cannot boot), wrong
port (bound to another port than $PORT). diagnose.yml runs right after the start ("young"), then again once the
service is older than the stability window ("settled"). Goals (issue 14): settled <= 2 s; young healthy <= window +
2 s; young broken named within 5 s of its evidence (slow boot: --timeout + 5 s, worker timeout: one timeout cycle +
5 s, flapping: one restart period + 5 s). The wall time includes ansible-playbook's own start.
"""

import argparse
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import json  # noqa: E402
from doctor_run import PYTHON, make_app, run_playbook  # noqa: E402
from gunicorn_service import GunicornService, free_port, start_keep_alive_loop, start_restart_loop  # noqa: E402
from test_stabilize import stop_tree  # noqa: E402


def slow_import(text):
    return text.replace("import os\n", "import os\nimport time\ntime.sleep(20)\n", 1)


def import_error(text):
    return text.replace("import os\n", "import os\nimport speech_client_that_is_not_installed  # noqa\n", 1)


def slow_route(text):
    return text + '\n\n@app.get("/slow")\ndef slow():\n    import time\n    time.sleep(30)\n    return "late"\n'


class Kind(object):
    """One kind of service: start() it in `work`, stop() it by PID."""

    def __init__(self, name, goal, edit=None):
        self.name, self.goal, self.edit = name, goal, edit
        self.stops = []

    def start(self, work, port):
        app = make_app(work, self.edit)
        log = work / "gunicorn.log"
        getattr(self, "_" + self.name)(app, port, log)
        return app, log

    def _service(self, app, port, log, **kwargs):
        service = GunicornService(app, "AgentLocator.main:app", log, python=PYTHON, env={"PORT": str(port)}, **kwargs)
        service.start()
        self.stops.append(service.stop)

    def _loop(self, app, port, log, args, env=None):
        loop = start_keep_alive_loop(app, port, log, PYTHON, args, env)
        self.stops.append(lambda: stop_tree(loop.pid))

    def _healthy(self, app, port, log):
        self._service(app, port, log, bind="0.0.0.0:%d" % port)

    def _slow_boot(self, app, port, log):
        self._service(app, port, log, bind="0.0.0.0:%d" % port, extra_args=["--timeout", "5"])

    def _worker_timeout(self, app, port, log):
        self._service(app, port, log, bind="0.0.0.0:%d" % port, workers=2, extra_args=["--timeout", "5"])
        stop = threading.Event()

        def call_slow():
            while not stop.is_set():
                try:
                    urllib.request.urlopen("http://127.0.0.1:%d/slow" % port, timeout=10)
                except OSError:
                    time.sleep(0.2)
        threading.Thread(target=call_slow, daemon=True).start()
        self.stops.append(stop.set)

    def _wrong_port(self, app, port, log):
        self._service(app, port, log, bind="0.0.0.0:%d" % free_port())

    def _flapping(self, app, port, log):
        loop = start_restart_loop(app, port, log, PYTHON, period=8.0)
        self.stops.append(lambda: stop_tree(loop.pid))

    def _import_error(self, app, port, log):
        self._loop(app, port, log, "")

    def _eventlet_crash(self, app, port, log):
        self._loop(app, port, log, "-k eventlet", env={"EVENTLET_HUB": "no_such_hub"})

    def stop(self):
        for stop in reversed(self.stops):
            stop()
        self.stops = []


KINDS = [
    Kind("healthy", "young: window + 2 s; settled: 2 s"),
    Kind("flapping", "one restart period (8 s) + 5 s"),
    Kind("slow_boot", "--timeout 5 + 5 s", slow_import),
    Kind("worker_timeout", "one timeout cycle (~6 s) + 5 s", slow_route),
    Kind("import_error", "5 s after the first failed boot", import_error),
    Kind("wrong_port", "settled: 2 s"),
    Kind("eventlet_crash", "5 s after the first crash"),
]


def diagnose(work, app, port, log, window, name):
    started = time.time()
    run_playbook("diagnose.yml", work, {"doctor_chdir": str(app), "doctor_port": port, "doctor_log_file": str(log),
                                        "doctor_stability_window": window}, timeout=600)
    seconds = time.time() - started
    report = json.loads((work / "reports" / "target.json").read_text())
    (work / "reports" / "target.json").rename(work / "reports" / ("target.%s.json" % name))   # kept for a look
    causes = [c["id"] for c in report["causes"] if c["severity"] == "fail"] or [c["id"] for c in report["causes"]]
    return {"seconds": seconds, "verdict": report["verdict"], "causes": causes[:3],
            "probe": report["timings"].get("total"), "window": report["timings"].get("healthz")}


def cell(result):
    causes = ", ".join(result["causes"]) or "-"
    return "%.1f s (probe %.1f, window %.1f): %s %s" % (
        result["seconds"], result["probe"] or 0, result["window"] or 0, result["verdict"], causes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=15)
    parser.add_argument("--kinds", default=",".join(k.name for k in KINDS))
    args = parser.parse_args()
    wanted = args.kinds.split(",")
    rows = []
    for kind in [k for k in KINDS if k.name in wanted]:
        work = Path(tempfile.mkdtemp(prefix="doctor-young-%s-" % kind.name))
        port = free_port()
        try:
            started = time.time()
            app, log = kind.start(work, port)
            young = diagnose(work, app, port, log, args.window, "young")
            time.sleep(max(0.0, started + args.window + 1 - time.time()))
            settled = diagnose(work, app, port, log, args.window, "settled")
        finally:
            kind.stop()
        rows.append((kind, young, settled))
        print("%-15s young %s | settled %s   (reports in %s)" % (kind.name, cell(young), cell(settled), work / "reports"),
              flush=True)
    print("\n| service | just started | older than the %d s window | goal |" % args.window)
    print("|---|---|---|---|")
    for kind, young, settled in rows:
        print("| %s | %s | %s | %s |" % (kind.name, cell(young), cell(settled), kind.goal))


if __name__ == "__main__":
    main()
