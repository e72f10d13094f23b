"""gunicorn bound to a unix socket behind a real nginx that holds $PORT (issue 13 points 3 and 7): diagnose says
healthy when both answer, names the dead backend when gunicorn is killed, and never tells the user to take $PORT
from the proxy."""

import http.client
import signal
import socket

import psutil
import pytest

from doctor_run import cause, cause_ids, diagnose, layer, make_app
from test_stabilize import wait_for
from tls_proxy import NginxUnixProxy


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
    app_dir = make_app(tmp_path)
    sock = tmp_path / "run" / "app.sock"
    sock.parent.mkdir()
    service = services(app_dir, tmp_path / "gunicorn.log", ready=False, bind="unix:%s" % sock,
                       env={"PORT": str(port)})
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
