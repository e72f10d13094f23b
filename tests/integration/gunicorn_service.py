"""Start, probe and stop a real gunicorn master for integration tests.

Everything is addressed by PID: the master we spawned and the workers we saw
under it. Nothing is killed by name, so parallel runs and other gunicorns on
the machine are left alone.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil


def free_port(host="127.0.0.1"):
    """Ask the kernel for an unused TCP port (may race; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _alive(proc):
    # A zombie has exited; it only waits for its (new) parent to reap it.
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs, timeout, poll=0.05):
    """Return the processes still alive after up to ``timeout`` seconds.

    Not psutil.wait_procs(): for non-children it treats a zombie as running,
    and orphaned workers can stay zombies in containers without a reaping init.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(poll)
        alive = [p for p in alive if _alive(p)]
    return alive


def stop_popen(proc, children, grace):
    """SIGTERM to a master we started, SIGKILL after `grace`; then its workers by their PIDs. Workers normally
    exit with the master; an orphan (the master SIGKILLed) is killed here. psutil.Process.kill() checks the
    process start time, so a recycled PID is never hit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for p in _wait_gone(children, timeout=grace):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(children, timeout=5)


class GunicornService:
    """One gunicorn master serving ``app_spec`` from ``app_dir``.

    The master's stdout/stderr go to ``log_path`` too (appended), so errors
    printed before gunicorn opens its error log are not lost.
    """

    def __init__(
        self,
        app_dir,
        app_spec,
        log_path,
        worker_class="sync",
        bind=None,
        workers=1,
        extra_args=(),
        env=None,
        python=sys.executable,
        health_path="/healthz",
        control_socket=False,
        wrapper=(),
        argv=None,
    ):
        self.app_dir = str(app_dir)
        self.app_spec = app_spec
        self.log_path = str(log_path)
        self.worker_class = worker_class
        self.bind = bind or f"127.0.0.1:{free_port()}"
        self.workers = workers
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.python = python
        self.health_path = health_path
        # gunicorn 25's control socket defaults to one path per user
        # (~/.gunicorn/gunicorn.ctl), which parallel masters would fight over.
        self.control_socket = control_socket
        self.wrapper = list(wrapper)  # an exec-ing prefix such as ["prlimit", "--nofile=256:256"]
        # gunicorn's arguments as given, instead of the usual ones (settings from a config file or
        # GUNICORN_CMD_ARGS); `bind` then only says where the service answers.
        self.argv = None if argv is None else list(argv)
        self.proc = None
        self.children = []  # psutil.Process objects of workers we have seen

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def host(self):
        return self.bind.rpartition(":")[0]

    @property
    def port(self):
        return int(self.bind.rpartition(":")[2])

    def url(self, path="/", scheme="http"):
        return f"{scheme}://{self.host}:{self.port}{path}"

    def command(self):
        if self.argv is not None:
            return self.wrapper + [self.python, "-m", "gunicorn"] + self.argv
        cmd = self.wrapper + [self.python, "-m", "gunicorn", self.app_spec]
        cmd += ["-k", self.worker_class, "-w", str(self.workers), "-b", self.bind]
        cmd += ["--error-logfile", self.log_path, "--capture-output", "--log-level", "info"]
        if not self.control_socket:
            cmd.append("--no-control-socket")
        return cmd + self.extra_args

    def start(self):
        if self.proc is not None:
            raise RuntimeError("already started")
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as console:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.app_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
            )
        return self

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _fail(self, exc_type, why):
        tail = "\n".join(self.log_text().splitlines()[-40:])
        raise exc_type(
            f"gunicorn {self.worker_class} pid={self.pid}: {why}\n--- log tail ---\n{tail}"
        )

    def wait_for_log(self, needle, timeout=10.0, poll=0.05):
        """Poll the log until ``needle`` appears; fail early if the master dies."""
        deadline = time.monotonic() + timeout
        while True:
            if needle in self.log_text():
                return
            if self.proc.poll() is not None:
                self._fail(
                    RuntimeError, f"exited with {self.proc.returncode} before logging {needle!r}"
                )
            if time.monotonic() >= deadline:
                self._fail(TimeoutError, f"{needle!r} not logged within {timeout}s")
            time.sleep(poll)

    def _healthy(self):
        try:
            with urllib.request.urlopen(self.url(self.health_path), timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            return False

    def wait_ready(self, timeout=20.0, poll=0.05):
        """Ready = master logged ``Listening at`` and the health URL answers 200.

        Workers are recorded at this point; with ``workers > 1`` some may still
        be booting, so stop() records again before signalling.
        """
        deadline = time.monotonic() + timeout
        self.wait_for_log("Listening at", timeout=timeout, poll=poll)
        while self.health_path and not self._healthy():
            if self.proc.poll() is not None:
                self._fail(
                    RuntimeError, f"exited with {self.proc.returncode} before becoming healthy"
                )
            if time.monotonic() >= deadline:
                self._fail(TimeoutError, f"{self.health_path} not 200 within {timeout}s")
            time.sleep(poll)
        self.record_children()
        return self

    def record_children(self):
        """Remember the master's current descendants so stop() can reap them."""
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return self.children
        known = {p.pid for p in self.children}
        self.children += [p for p in found if p.pid not in known]
        return self.children

    def surviving_children(self):
        return [p for p in self.children if _alive(p)]

    def stop(self, grace=10.0):
        """SIGTERM the master, wait up to ``grace``, then SIGKILL; same for workers."""
        if self.proc is None:
            return
        self.record_children()
        stop_popen(self.proc, self.children, grace)

    def __enter__(self):
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


# A runner that restarts the master every `period` seconds while /healthz stays 200: it starts the next master
# beside the running one (--reuse-port), lets it listen for `overlap` seconds, then SIGTERMs the old one and waits
# for it. What a "zero-downtime" restart script in a loop, or a platform health check on the wrong port, does.
RESTART_LOOP = r'''old=""
while true; do
  "$0" -m gunicorn AgentLocator.main:app -b 0.0.0.0:$1 --reuse-port --no-control-socket --error-logfile "$2" $5 &
  new=$!
  sleep $3
  if [ -n "$old" ]; then kill -TERM $old; wait $old; fi
  old=$new
  sleep $4
done'''


def start_restart_loop(app_dir, port, log_path, python=sys.executable, period=8.0, overlap=1.5, extra_args=""):
    """Start RESTART_LOOP in its own session -> its Popen (stop it and its masters by PID: stop_tree)."""
    return subprocess.Popen(["bash", "-c", RESTART_LOOP, python, str(port), str(log_path), str(overlap),
                             str(period - overlap), extra_args], cwd=str(app_dir), env=dict(os.environ, PORT=str(port)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


# A keep-alive runner: it starts gunicorn again one second after it exits, whatever the reason (a master that cannot
# boot the app exits at once: a crash loop). $3: more gunicorn arguments.
KEEP_ALIVE = 'while true; do "$0" -m gunicorn AgentLocator.main:app -b 0.0.0.0:$1 --no-control-socket ' \
             '--error-logfile "$2" $3; sleep 1; done'


def start_keep_alive_loop(app_dir, port, log_path, python=sys.executable, args="", env=None):
    """Start KEEP_ALIVE in its own session, with PORT and `env` in its environment -> its Popen (stop it and its masters
    by PID: stop_tree)."""
    return subprocess.Popen(["bash", "-c", KEEP_ALIVE, python, str(port), str(log_path), args], cwd=str(app_dir),
                            env=dict(os.environ, PORT=str(port), **(env or {})), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
