"""diagnose.yml on the ways gunicorn is really deployed (issue 13): settings from a config file (the
./gunicorn.conf.py gunicorn loads by default, a literal bind and one computed from PORT), from GUNICORN_CMD_ARGS,
hidden by setproctitle, gthread with threads, an app factory, an IPv6 bind and two binds. Real gunicorn, the real
playbook; each test asserts the verdict and the sources the report shows."""

import os
import shutil
import socket

import pytest

from doctor_run import cause, cause_ids, diagnose, layer, make_app
from gunicorn_service import free_port
import venvs

APP = "AgentLocator.main:app"


def settings(report):
    """The report's effective settings -> {key: (value, source)}."""
    return dict((k, (v["value"], v["source"])) for k, v in report["settings"]["values"].items())


def check_detail(report, layer_name, prefix):
    return next(c["detail"] for c in layer(report, layer_name)["checks"] if c["name"].startswith(prefix))


def start(services, tmp_path, port, argv, env=None, bind=None, **kwargs):
    """A gunicorn of the demo app started with exactly `argv`, its output in tmp_path/gunicorn.log."""
    app_dir = kwargs.pop("app_dir", None) or make_app(tmp_path)
    config = kwargs.pop("config", None)
    if config is not None:
        (app_dir / "gunicorn.conf.py").write_text(config)
    return services(app_dir, tmp_path / "gunicorn.log", argv=list(argv) + ["--no-control-socket"],
                    bind=bind or "127.0.0.1:%d" % port, env=dict({"PORT": str(port)}, **(env or {})), **kwargs)


def doctor_vars(service, tmp_path, **extra):
    return dict({"doctor_chdir": service.app_dir, "doctor_log_file": str(tmp_path / "gunicorn.log")}, **extra)


def test_bind_computed_from_port_in_the_default_config_file_and_the_log_found_from_errorlog(services, tmp_path, port):
    config = ('import os\n'
              'bind = "0.0.0.0:" + os.environ["PORT"]\n'
              'timeout = int(os.environ.get("APP_TIMEOUT", "75"))\n'
              'errorlog = "%s"\n' % (tmp_path / "gunicorn.log"))
    service = start(services, tmp_path, port, [APP], config=config)
    report, dummy = diagnose(tmp_path, {"doctor_chdir": service.app_dir})   # no doctor_log_file

    assert report["verdict"] == "healthy", report["causes"]
    conf = os.path.join(service.app_dir, "gunicorn.conf.py")
    found = settings(report)
    assert found["bind"] == (["0.0.0.0:%d" % port], "config file %s:2" % conf)
    assert found["timeout"] == (75, "config file %s:3" % conf)
    assert found["workers"] == (1, "default")
    assert found["app"] == (APP, "command line")
    assert report["settings"]["config_file"] == conf
    # The log gunicorn writes, found from the effective errorlog.
    assert report["log_file"] == str(tmp_path / "gunicorn.log")
    assert report["log_file_source"] == "errorlog of master %d (config file %s:4)" % (service.pid, conf)
    assert check_detail(report, "process", "no periodic SIGTERM") != "no log to read"
    detail = check_detail(report, "process", "gunicorn settings of master")
    assert "bind 0.0.0.0:%d (config file %s:2)" % (port, conf) in detail and "timeout 75 (config file" in detail


def test_literal_bind_in_a_config_file_named_by_c_is_the_wrong_port(services, tmp_path, port):
    other = free_port()
    app_dir = make_app(tmp_path)
    (app_dir / "deploy").mkdir()
    (app_dir / "deploy" / "gunicorn.prod.py").write_text('workers = 2\nbind = "0.0.0.0:%d"\n' % other)
    service = start(services, tmp_path, port, ["-c", "deploy/gunicorn.prod.py", APP], app_dir=app_dir,
                    bind="127.0.0.1:%d" % other)
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path))

    assert report["verdict"] == "down" and report["failed_layer"] == "listen"
    assert cause_ids(report, "fail") == ["wrong_port"]
    conf = os.path.join(service.app_dir, "deploy", "gunicorn.prod.py")
    found = cause(report, "wrong_port")
    assert "master %d binds 0.0.0.0:%d, from config file %s:2" % (service.pid, other, conf) in found["evidence"]
    assert 'in the config file %s:2 set `bind = "0.0.0.0:" + os.environ["PORT"]`' % conf in found["remedy"]
    assert "replace -b" not in found["remedy"]
    assert settings(report)["workers"] == (2, "config file %s:1" % conf)


def test_gunicorn_cmd_args_settings_are_shown_as_such(services, tmp_path, port):
    service = start(services, tmp_path, port, [APP, "-b", "0.0.0.0:%d" % port],
                    env={"GUNICORN_CMD_ARGS": "--timeout 45 --workers 2 --graceful-timeout 5"})
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path))

    assert report["verdict"] == "healthy", report["causes"]
    found = settings(report)
    assert found["timeout"] == (45, "GUNICORN_CMD_ARGS")
    assert found["workers"] == (2, "GUNICORN_CMD_ARGS")
    assert found["graceful_timeout"] == (5, "GUNICORN_CMD_ARGS")
    assert found["bind"] == (["0.0.0.0:%d" % port], "command line")
    assert "/proc/%d/environ" % service.pid in report["settings"]["read_from"]


@pytest.fixture(scope="module")
def setproctitle_python():
    try:
        return venvs.venv("gunicorn==25.3.0", "setproctitle==1.3.8")
    except Exception as e:  # pragma: no cover - no index to build it from
        pytest.skip("cannot build a venv with setproctitle: %s" % e)


def test_setproctitle_master_is_recognised_and_read_from_its_title_env_file_config_and_sockets(
        services, tmp_path, port, setproctitle_python):
    env_file = tmp_path / "app.env"
    env_file.write_text("PORT=%d\nAPP_WORKERS=2\n" % port)
    config = 'import os\nbind = "0.0.0.0:" + os.environ["PORT"]\nworkers = int(os.environ["APP_WORKERS"])\n'
    service = start(services, tmp_path, port, [APP], config=config, python=setproctitle_python,
                    env={"APP_WORKERS": "2"})
    with open("/proc/%d/cmdline" % service.pid, "rb") as f:
        assert f.read().startswith(b"gunicorn: master [%s]" % APP.encode())   # setproctitle is at work
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path, doctor_env_file=str(env_file)))

    assert report["verdict"] == "healthy", report["causes"]
    assert report["settings"]["pid"] == service.pid
    read_from = " / ".join(report["settings"]["read_from"])
    assert 'its process title "gunicorn: master [%s]"' % APP in read_from
    assert "the environment of doctor_env_file" in read_from
    assert "the config file %s" % os.path.join(service.app_dir, "gunicorn.conf.py") in read_from
    assert "its listening sockets" in read_from
    found = settings(report)
    assert found["bind"] == (["0.0.0.0:%d" % port], "listening sockets")
    assert found["workers"] == (2, "config file %s:3" % os.path.join(service.app_dir, "gunicorn.conf.py"))
    assert found["app"] == (APP, "process title")
    assert "master %d" % service.pid in check_detail(report, "listen", "listening on $PORT")


def test_gthread_with_threads_counts_threads_in_the_capacity_note(services, tmp_path, port):
    service = start(services, tmp_path, port, [APP, "-k", "gthread", "--threads", "4", "-b", "0.0.0.0:%d" % port])
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path))

    assert report["verdict"] == "healthy", report["causes"]
    assert report["settings"]["concurrency"] == {"calls": 4, "detail": "-k gthread -w 1 --threads 4 (1 x 4)"}
    assert settings(report)["threads"] == (4, "command line")
    voice = " ".join(c["detail"] for c in layer(report, "voice")["checks"])
    assert "at most 4 call(s) can be up at once" in voice
    assert "at most 1 " not in voice
    assert "at most 4 concurrent calls" in check_detail(report, "eventlet", "eventlet in use")


def test_app_factory(services, tmp_path, port):
    factory = "AgentLocator.main:create_app()"
    service = start(services, tmp_path, port, [factory, "-b", "0.0.0.0:%d" % port])
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path, doctor_app=factory))

    assert report["verdict"] == "healthy", report["causes"]
    assert settings(report)["app"] == (factory, "command line")
    assert layer(report, "boot")["status"] == "pass"


def test_ipv6_any_bind(services, tmp_path, port):
    service = start(services, tmp_path, port, [APP, "-b", "[::]:%d" % port], bind="127.0.0.1:%d" % port)
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path))

    assert report["verdict"] == "healthy", report["causes"]
    assert settings(report)["bind"] == (["[::]:%d" % port], "command line")
    assert "bind [::]:%d" % port in check_detail(report, "process", "gunicorn master")


def test_two_binds(services, tmp_path, port):
    other = free_port()
    service = start(services, tmp_path, port, [APP, "-b", "127.0.0.1:%d" % other, "-b", "0.0.0.0:%d" % port])
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path))

    assert report["verdict"] == "healthy", report["causes"]
    assert settings(report)["bind"] == (["127.0.0.1:%d" % other, "0.0.0.0:%d" % port], "command line")
    assert "0.0.0.0:%d by master %d" % (port, service.pid) in check_detail(report, "listen", "listening on $PORT")


def test_app_named_only_by_wsgi_app_in_the_config_file(services, tmp_path, port):
    """`gunicorn -c gunicorn.conf.py` with `wsgi_app` in the file: no app spec on the command line (the parser once
    took `gunicorn` of `-m gunicorn` for it and called the healthy master "not the app")."""
    config = 'import os\nwsgi_app = "%s"\nbind = f"0.0.0.0:{os.environ[\'PORT\']}"\n' % APP
    service = start(services, tmp_path, port, ["-c", "gunicorn.conf.py"], config=config)
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path))

    assert report["verdict"] == "healthy", report["causes"]
    conf = os.path.join(service.app_dir, "gunicorn.conf.py")
    assert settings(report)["app"] == (APP, "config file %s:2" % conf)
    assert settings(report)["bind"] == (["0.0.0.0:%d" % port], "config file %s:3" % conf)


def socket_activated(services, tmp_path, port, address, argv):
    """gunicorn started by systemd-socket-activate (the protocol of a systemd .socket unit: LISTEN_FDS, LISTEN_PID),
    which listens on `address`:port and execs gunicorn in its own process at the first connection."""
    if not shutil.which("systemd-socket-activate"):
        pytest.skip("systemd-socket-activate is not installed")
    wrapper = ["systemd-socket-activate", "-l", "%s:%d" % (address, port), "-E", "PORT=%d" % port,
               "-E", "PATH=%s" % os.environ["PATH"], "-E", "XDG_RUNTIME_DIR=%s" % tmp_path]
    service = services(make_app(tmp_path), tmp_path / "gunicorn.log", ready=False, bind="127.0.0.1:%d" % port,
                       wrapper=wrapper, argv=argv)
    service.wait_for_log("Listening on %s:%d" % (address, port))   # the activator's own line
    socket.create_connection(("127.0.0.1", port), timeout=10).close()   # it execs gunicorn now
    return service.wait_ready()


def test_socket_activated_on_loopback_names_the_socket_unit_not_the_ignored_bind(services, tmp_path, port):
    # gunicorn 25's control socket (in XDG_RUNTIME_DIR) is left on: it is no bind of the app.
    service = socket_activated(services, tmp_path, port, "127.0.0.1", [APP, "-w", "2", "-b", "0.0.0.0:9"])
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path, doctor_port=port))

    assert report["verdict"] == "degraded" and cause_ids(report, "fail") == ["bind_loopback_only"]
    source = "listening sockets, passed by socket activation (LISTEN_FDS=1 in its environment)"
    assert settings(report)["bind"] == (["127.0.0.1:%d" % port], source)   # not the -b 0.0.0.0:9 gunicorn ignores
    found = cause(report, "bind_loopback_only")
    assert "master %d binds 127.0.0.1:%d, from %s" % (service.pid, port, source) in found["evidence"]
    assert "ignores -b and bind: listen on 0.0.0.0:%d in the socket activator that starts it (ListenStream=" % port \
        in found["remedy"]


def test_socket_activated_on_port_is_healthy(services, tmp_path, port):
    service = socket_activated(services, tmp_path, port, "0.0.0.0", [APP, "--no-control-socket"])
    report, dummy = diagnose(tmp_path, doctor_vars(service, tmp_path, doctor_port=port))

    assert report["verdict"] == "healthy", report["causes"]
    assert settings(report)["bind"][0] == ["0.0.0.0:%d" % port]
    assert "passed by socket activation" in settings(report)["bind"][1]
