"""gunicorn bound to a unix socket behind a real nginx that holds $PORT (issue 13 points 3 and 7): diagnose says
healthy when both answer, names the dead backend when gunicorn is killed, and never tells the user to take $PORT
from the proxy."""

import contextlib
import http.client
import signal
import socket

import psutil
import pytest

from doctor_run import PYTHON, cause, cause_ids, diagnose, layer, make_app
from gunicorn_service import free_port
from test_stabilize import wait_for
from tls_proxy import NginxTcpProxy, NginxUnixProxy


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=3)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(3)
        self.sock.connect(self.path)


def status_over(path, url="/healthz"):
    """GET url over the unix socket: its status, or None when nothing answers."""
    conn = UnixHTTPConnection(str(path))
    try:
        conn.request("GET", url)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def status_through(port, url="/healthz"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", url)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@pytest.fixture
def behind_nginx(services, tmp_path, port):
    """The demo app on gunicorn -b unix:TMP/run/app.sock (PORT set, as the platform does) behind nginx on $PORT."""
    with socket_behind_nginx(services, tmp_path, port, {"PORT": str(port)}) as found:
        yield found


@pytest.fixture
def behind_nginx_no_port(services, tmp_path, port):
    """The same, but PORT is set nowhere: only nginx's configuration says which port the service is on."""
    with socket_behind_nginx(services, tmp_path, port, {}) as found:
        yield found


@contextlib.contextmanager
def socket_behind_nginx(services, tmp_path, port, env):
    app_dir = make_app(tmp_path)
    sock = tmp_path / "run" / "app.sock"
    sock.parent.mkdir()
    service = services(app_dir, tmp_path / "gunicorn.log", ready=False, bind="unix:%s" % sock, env=env)
    service.wait_for_log("Listening at", timeout=30)
    wait_for(lambda: status_over(sock) == 200, 30, "/healthz over %s" % sock)
    service.record_children()
    proxy = NginxUnixProxy(tmp_path / "nginx", port, sock)
    try:
        proxy.start()
        wait_for(lambda: status_through(port) == 200, 15, "/healthz through nginx")
        yield service, sock, proxy
    finally:
        proxy.stop()


@pytest.fixture
def behind_nginx_tcp(services, tmp_path, port):
    """The demo app on gunicorn -b 127.0.0.1:BACKEND (PORT set) behind nginx on $PORT: proxy_pass over TCP."""
    backend = free_port()
    service = services(make_app(tmp_path), tmp_path / "gunicorn.log", bind="127.0.0.1:%d" % backend,
                       env={"PORT": str(port)})
    proxy = NginxTcpProxy(tmp_path / "nginx", port, backend)
    try:
        proxy.start()
        wait_for(lambda: status_through(port) == 200, 15, "/healthz through nginx")
        yield service, backend, proxy
    finally:
        proxy.stop()


def host_vars(service, tmp_path):
    return {"doctor_chdir": str(service.app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")}


def test_a_unix_socket_service_behind_nginx_is_healthy(behind_nginx, tmp_path, port):
    service, sock, proxy = behind_nginx
    report, out = diagnose(tmp_path, host_vars(service, tmp_path))
    assert report["verdict"] == "healthy", report["causes"]
    assert cause_ids(report) == [] and report["failed_layer"] is None
    listen = layer(report, "listen")
    assert listen["status"] == "pass"
    detail = listen["checks"][0]["detail"]
    assert "nginx (pid %d)" % proxy.pid in detail and "unix:%s accepts: master %d" % (sock, service.pid) in detail
    assert any(c["name"] == "front door forwards to the socket" and c["status"] == "pass" for c in listen["checks"])
    checks = {c["name"]: c for c in layer(report, "healthz")["checks"]}
    assert checks["stable 200"]["status"] == "pass" and "through the front door nginx" in checks["stable 200"]["detail"]
    assert checks["stable 200 over the socket"]["status"] == "pass"
    assert "unix:%s" % sock in checks["stable 200 over the socket"]["detail"]
    assert "not the app" not in out


def kill_backend(service):
    """SIGKILL the master and its workers by PID: gunicorn cannot remove its socket file (a stale socket)."""
    procs = [psutil.Process(service.pid)] + service.record_children()
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    service.proc.wait(timeout=10)
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs), 10, "killed")


def test_the_backend_killed_behind_nginx_is_named_and_port_stays_with_the_proxy(behind_nginx, tmp_path, port):
    service, sock, proxy = behind_nginx
    kill_backend(service)
    assert sock.is_socket() and status_through(port) == 502
    # The master that carried PORT in its environment is gone: the platform's port is given, as a user would.
    report, out = diagnose(tmp_path, dict(host_vars(service, tmp_path), doctor_port=port))
    assert report["verdict"] == "down" and report["failed_layer"] == "listen"
    assert "not_listening" not in cause_ids(report)
    found = cause(report, "proxy_backend_down")
    evidence = " | ".join(found["evidence"])
    assert "nginx (pid %d) on 127.0.0.1:%d" % (proxy.pid, port) in evidence
    assert "unix:%s is a stale socket file: nothing accepts on it" % sock in evidence
    assert "-> 502" in evidence and "Connection refused" in evidence
    # The remedy keeps the socket and leaves $PORT to nginx.
    assert "-b unix:%s" % sock in found["remedy"] and "curl --unix-socket %s" % sock in found["remedy"]
    for c in report["causes"]:
        assert "0.0.0.0:$PORT" not in c["remedy"] and "0.0.0.0:%d" % port not in c["remedy"], c
    assert "not the app" not in out


def test_a_loopback_port_behind_nginx_is_healthy_not_the_wrong_port(behind_nginx_tcp, tmp_path, port):
    """nginx on $PORT with proxy_pass to gunicorn on 127.0.0.1:BACKEND, the most common deployment: the app listens
    behind its front door (not wrong_port, and nginx is not "a process that is not the app")."""
    service, backend, proxy = behind_nginx_tcp
    report, out = diagnose(tmp_path, host_vars(service, tmp_path))
    assert report["verdict"] == "healthy", report["causes"]
    detail = layer(report, "listen")["checks"][0]["detail"]
    assert "nginx (pid %d)" % proxy.pid in detail and "forwards to 127.0.0.1:%d, where the app listens: master %d" % (
        backend, service.pid) in detail
    checks = {c["name"]: c for c in layer(report, "healthz")["checks"]}
    assert checks["stable 200"]["status"] == "pass" and "through the front door nginx" in checks["stable 200"]["detail"]
    assert checks["stable 200 on the backend port"]["status"] == "pass"
    assert "http://127.0.0.1:%d/healthz" % backend in checks["stable 200 on the backend port"]["detail"]
    assert "not the app" not in out


def test_the_loopback_backend_killed_behind_nginx_is_named_and_port_stays_with_the_proxy(behind_nginx_tcp, tmp_path,
                                                                                         port):
    service, backend, proxy = behind_nginx_tcp
    kill_backend(service)
    assert status_through(port) == 502
    report, out = diagnose(tmp_path, dict(host_vars(service, tmp_path), doctor_port=port))
    assert report["verdict"] == "down" and report["failed_layer"] == "listen"
    assert cause_ids(report)[0] == "proxy_backend_down" and "not_listening" not in cause_ids(report)
    found = cause(report, "proxy_backend_down")
    evidence = " | ".join(found["evidence"])
    assert "nginx (pid %d) on 127.0.0.1:%d" % (proxy.pid, port) in evidence
    # Where it should listen: the log's last "Listening at", the port nginx's config forwards to.
    assert "nothing of the app listens on 127.0.0.1:%d (bound there per the log" % backend in evidence
    assert "-> 502" in evidence
    assert "-b 127.0.0.1:%d" % backend in found["remedy"] and "curl http://127.0.0.1:%d/healthz" % backend in found["remedy"]
    for c in report["causes"]:
        assert "0.0.0.0:$PORT" not in c["remedy"] and "0.0.0.0:%d" % port not in c["remedy"], c


def test_port_set_nowhere_is_taken_from_the_front_door_that_forwards_to_the_socket(
        behind_nginx_no_port, tmp_path, port):
    """No doctor_port, no PORT in any environment, env file, unit or program: nginx's configuration forwards to the
    app's socket, so its port is the service's port (named as such), not the runbook's default 8000."""
    service, sock, proxy = behind_nginx_no_port
    assert "PORT" not in psutil.Process(service.pid).environ()
    report = diagnose(tmp_path, host_vars(service, tmp_path))[0]
    assert report["port"] == port, (report["port"], report["port_source"])
    assert report["port_source"].startswith("front door nginx (pid %d) listening on 127.0.0.1:%d, forwarding to "
                                            "unix:%s" % (proxy.pid, port, sock)), report["port_source"]
    assert report["verdict"] == "healthy" and "port_unset" not in cause_ids(report), report["causes"]
    resolved = next(c for c in layer(report, "port")["checks"] if c["name"] == "port resolved")
    assert resolved["status"] == "pass" and "PORT itself is set nowhere" in resolved["detail"]

    # The backend dies: the log's last "Listening at: unix:..." still ties nginx to the app.
    kill_backend(service)
    report = diagnose(tmp_path, host_vars(service, tmp_path))[0]
    assert report["port"] == port and report["port_source"].startswith("front door nginx")
    assert "proxy_backend_down" in cause_ids(report) and "port_unset" not in cause_ids(report)


def test_port_of_a_dead_master_is_taken_from_the_log(services, tmp_path):
    """The only master ran on a literal port and is gone; PORT is set nowhere: the log's last master says the port."""
    other = free_port()
    service = services(make_app(tmp_path), tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % other, env={})
    service.stop(grace=5)
    report = diagnose(tmp_path, host_vars(service, tmp_path))[0]
    assert report["port"] == other, (report["port"], report["port_source"])
    assert report["port_source"] == "the last master in the log %s (pid %d, listening on 0.0.0.0:%d)" % (
        tmp_path / "gunicorn.log", service.pid, other)
    assert report["verdict"] == "down" and "port_unset" not in cause_ids(report)


# --- stabilize keeps the shape (issue 13 point 7) ---------------------------------------------------------------
from test_stabilize import (  # noqa: E402
    CLEAN_UP_TASK, Host, assert_idempotent, recap, stabilize, stabilize_report, stable_200)


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.cleanup()


def test_stabilize_keeps_the_config_file_and_lists_what_it_overrode(host, tmp_path):
    """A service started by hand with -c gunicorn.conf.py whose bind is hard-coded to another port: the canonical
    command keeps -c, overrides the bind and the report lists it; the workers and the timeout stay the file's."""
    wrong = free_port()
    conf = host.app_dir / "gunicorn.conf.py"
    conf.write_text('bind = "0.0.0.0:%d"\nworkers = 2\ntimeout = 90\n' % wrong)
    host.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-c", "gunicorn.conf.py", "--no-control-socket"],
               host.app_dir, env={"PORT": str(host.port)})
    wait_for(lambda: status_through(wrong) == 200, 30, "the config-file service")

    stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    stable_200(host.port)
    cmdline = psutil.Process(host.service_pid()).cmdline()
    assert cmdline[cmdline.index("-c") + 1] == str(conf) and "0.0.0.0:%d" % host.port in cmdline
    assert conf.read_text().startswith('bind = "0.0.0.0:%d"' % wrong)     # the user's file is untouched
    report = stabilize_report(tmp_path)
    assert report["result"] == "stabilized" and report["shape"]["config"] == str(conf)
    overridden = {o["setting"]: o for o in report["shape"]["overrides"]}
    assert set(overridden) == {"bind"} and overridden["bind"]["source"] == "config file %s:1" % conf
    assert [(k["setting"], k["value"], k["source"]) for k in report["shape"]["kept"]] == [
        ("workers", 2, "config file %s:2" % conf), ("timeout", 90, "config file %s:3" % conf)]
    assert "-w" not in cmdline and "--timeout" not in cmdline
    wait_for(lambda: len(psutil.Process(host.service_pid()).children()) == 2, 20, "the config file's two workers")

    again = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert_idempotent(again)


def test_stabilize_keeps_the_socket_behind_nginx_and_verifies_through_it(host, tmp_path):
    sock = tmp_path / "run-app" / "app.sock"
    sock.parent.mkdir()
    host.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-b", "unix:%s" % sock, "--no-control-socket"],
               host.app_dir, env={"PORT": str(host.port)})
    wait_for(lambda: status_over(sock) == 200, 30, "the socket service")
    proxy = NginxUnixProxy(tmp_path / "nginx", host.port, sock)
    try:
        proxy.start()
        wait_for(lambda: status_through(host.port) == 200, 15, "/healthz through nginx")

        out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
        assert recap(out)["failed"] == 0
        master = host.service_pid()
        assert "unix:%s" % sock in psutil.Process(master).cmdline()
        assert "0.0.0.0:" not in " ".join(psutil.Process(master).cmdline())
        assert status_over(sock) == 200 and status_through(host.port) == 200
        assert proxy.proc.poll() is None                                  # nginx keeps $PORT
        report = stabilize_report(tmp_path)
        assert report["result"] == "stabilized" and report["verified"]["listen"] == "unix:%s" % sock
        assert report["shape"]["behind_proxy"] and report["shape"]["bind"] == "unix:%s" % sock

        again = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
        assert_idempotent(again)
        assert host.service_pid() == master
        # nginx holds $PORT in front of the socket: no reason for the clean-up, which the second run skips.
        assert CLEAN_UP_TASK not in again and "nothing to clean up" in again
    finally:
        proxy.stop()


def test_stabilize_keeps_the_loopback_port_behind_nginx_and_verifies_through_it(host, tmp_path):
    """gunicorn on 127.0.0.1:BACKEND behind nginx on $PORT (proxy_pass over TCP): the canonical command keeps that
    bind (nginx keeps $PORT), verify samples through nginx and on the port, and a second run changes nothing."""
    backend = free_port()
    host.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-b", "127.0.0.1:%d" % backend, "--no-control-socket"],
               host.app_dir, env={"PORT": str(host.port)})
    wait_for(lambda: status_through(backend) == 200, 30, "the backend service")
    proxy = NginxTcpProxy(tmp_path / "nginx", host.port, backend)
    try:
        proxy.start()
        wait_for(lambda: status_through(host.port) == 200, 15, "/healthz through nginx")

        out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
        assert recap(out)["failed"] == 0, out[-3000:]
        master = host.service_pid()
        argv = psutil.Process(master).cmdline()
        assert argv[argv.index("-b") + 1] == "127.0.0.1:%d" % backend and "0.0.0.0:" not in " ".join(argv)
        assert status_through(backend) == 200 and status_through(host.port) == 200
        assert proxy.proc.poll() is None                                  # nginx keeps $PORT
        report = stabilize_report(tmp_path)
        assert report["result"] == "stabilized" and report["verified"]["listen"] == "127.0.0.1:%d" % backend
        assert report["shape"]["behind_proxy"] and report["shape"]["bind"] == "127.0.0.1:%d" % backend
        assert "kept the loopback bind" in out

        again = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
        assert_idempotent(again)
        assert host.service_pid() == master
        assert CLEAN_UP_TASK not in again and "nothing to clean up" in again
    finally:
        proxy.stop()
