"""diagnose.yml against real `-k eventlet` services: the eventlet layer, one real fault per cause.

The voice layer is switched off (doctor_voice_checks: false) so each report shows the eventlet layer
alone. Extra app venvs (gevent beside eventlet; gunicorn 25 with eventlet 0.33.3) come from venvs.py,
built once and cached.
"""

import pytest

from doctor_run import cause, cause_ids, diagnose, layer, make_app
from venvs import venv

GOOD_ENV = {"EVENTLET_NO_GREENDNS": "1", "EVENTLET_HUB": "selects"}   # the runbook's NO_GREENDNS value
SERVER = ("gunicorn==25.3.0", "greenlet==3.5.6")


@pytest.fixture(autouse=True)
def no_eventlet_env(monkeypatch):
    """Services inherit os.environ: the test decides the EVENTLET_* variables."""
    for name in ("EVENTLET_NO_GREENDNS", "EVENTLET_HUB", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)


def eventlet_service(services, tmp_path, port, env=None, ready=True, **kwargs):
    app_dir = kwargs.pop("app_dir", None) or make_app(tmp_path)
    env = dict({"PORT": str(port)}, **(GOOD_ENV if env is None else env))
    return services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, worker_class="eventlet",
                    env=env, ready=ready, extra_args=["--timeout", "60"], **kwargs)


def run(tmp_path, app_dir, **extra):
    host_vars = dict({"doctor_chdir": str(app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log"),
                      "doctor_voice_checks": False}, **extra)
    return diagnose(tmp_path, host_vars)[0]


def checks(report):
    return {c["name"]: c for c in layer(report, "eventlet")["checks"]}


def eventlet_causes(report):
    return [c["id"] for c in report["causes"] if c["layer"] == "eventlet"]


def exits_by_itself(service, timeout=60):
    """A master that cannot start: wait for its exit (an event, not a sleep). -> exit code."""
    return service.proc.wait(timeout=timeout)


def test_healthy_eventlet_service(services, tmp_path, port):
    service = eventlet_service(services, tmp_path, port)
    report = run(tmp_path, service.app_dir)
    assert report["verdict"] == "healthy", report["causes"]
    assert eventlet_causes(report) == []
    assert layer(report, "eventlet")["status"] == "pass"
    found = checks(report)
    # eventlet's and gunicorn's deprecation notices are information in a check, not a cause.
    assert "DEPRECATED" in found["eventlet in use"]["detail"] or "EventletDeprecationWarning" in found["eventlet in use"]["detail"]
    assert "master %d" % service.pid in found["eventlet in use"]["detail"]
    assert "gunicorn 25.3.0, eventlet 0.41.3, greenlet 3.5.6" in found["versions"]["detail"]
    env = found["EVENTLET_* environment"]["detail"]
    assert "/proc/%d/environ" % service.pid in env and "EVENTLET_HUB=selects" in env
    assert 'eventlet reads only "yes"' in env          # =1 does not turn green DNS off: said, not blamed
    assert found["eventlet boot"]["status"] == "skip"  # a stable 200 needs no spare-port boot
    settings = found["worker settings"]["detail"]
    assert settings.startswith("-k eventlet -w 1 --worker-connections 1000 (1 x 1000)") and "--timeout 60" in settings


def test_eventlet_env_missing(services, tmp_path, port):
    service = eventlet_service(services, tmp_path, port, env={})
    report = run(tmp_path, service.app_dir)
    assert eventlet_causes(report) == ["eventlet_env_missing"]
    found = cause(report, "eventlet_env_missing")
    assert found["severity"] == "warn"
    assert "EVENTLET_NO_GREENDNS is not set in /proc/%d/environ (running master %d, -k eventlet)" % (
        service.pid, service.pid) in found["evidence"]
    assert "EVENTLET_NO_GREENDNS=yes and EVENTLET_HUB=selects" in found["remedy"]
    assert report["verdict"] == "degraded" and report["failed_layer"] is None


def test_runbook_hub_select_is_invalid(services, tmp_path, port):
    # The runbook's EVENTLET_HUB=select, for real: gunicorn 25 fails at master start.
    env_file = tmp_path / "service.env"
    env_file.write_text("PORT=%d\nEVENTLET_NO_GREENDNS=yes\nEVENTLET_HUB=select\n" % port)
    service = eventlet_service(services, tmp_path, port, env={"EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "select"},
                               ready=False)
    assert exits_by_itself(service) == 1
    report = run(tmp_path, service.app_dir, doctor_env_file=str(env_file))
    found = cause(report, "eventlet_env_invalid")
    assert found["severity"] == "fail"
    assert found["evidence"][0].startswith("EVENTLET_HUB=select in %s (env file): No module named 'eventlet.hubs.select'" % env_file)
    assert any(e.endswith("ModuleNotFoundError: No module named 'eventlet.hubs.select'") for e in found["evidence"])
    assert "EVENTLET_HUB=selects" in found["remedy"] and str(env_file) in found["remedy"]
    # The spare-port boot with a valid hub shows eventlet itself runs here.
    assert checks(report)["eventlet boot"]["status"] == "pass"
    assert eventlet_causes(report) == ["eventlet_env_invalid"]
    assert report["verdict"] == "down"


def test_gevent_beside_eventlet(services, tmp_path, port):
    python = venv(*SERVER, "eventlet==0.41.3", "gevent==26.9.0")
    service = eventlet_service(services, tmp_path, port, python=python)
    report = run(tmp_path, service.app_dir, doctor_python=python)
    assert eventlet_causes(report) == ["async_lib_conflict"]
    found = cause(report, "async_lib_conflict")
    assert found["severity"] == "warn"
    assert found["evidence"][0] == "gevent 26.9.0 installed beside eventlet 0.41.3 in %s (importlib.metadata)" % python
    assert "%s -m pip uninstall -y gevent" % python in found["remedy"]
    assert report["verdict"] == "degraded"


def late_patch(text):
    return text.replace("from .media import tone_frames\n",
                        "from .media import tone_frames\nimport eventlet\neventlet.monkey_patch()\n")


def first_patch(text):
    return text.replace('"""\n\nimport base64\n', '"""\n\nimport eventlet\neventlet.monkey_patch()\nimport base64\n', 1)


@pytest.mark.parametrize("how", ["late", "twice"])
def test_monkey_patch_misplaced(services, tmp_path, port, how):
    app_dir = make_app(tmp_path, edit=late_patch if how == "late" else first_patch)
    if how == "twice":   # the package's __init__ patches too: two calls, each first in its file
        init = app_dir / "AgentLocator" / "__init__.py"
        init.write_text("import eventlet\neventlet.monkey_patch()\n" + init.read_text())
    service = eventlet_service(services, tmp_path, port, app_dir=app_dir)
    report = run(tmp_path, service.app_dir)
    assert eventlet_causes(report) == ["monkey_patch_misplaced"]
    found = cause(report, "monkey_patch_misplaced")
    assert found["severity"] == "warn"   # gunicorn 25 -k eventlet patches before importing the app
    if how == "late":
        line = (app_dir / "AgentLocator" / "main.py").read_text().splitlines().index("eventlet.monkey_patch()") + 1
        assert found["evidence"][0].startswith("AgentLocator/main.py:%d: eventlet.monkey_patch() after importing " % line)
        assert "flask" in found["evidence"][0]
        assert any(e.startswith("the dry import: before the first eventlet.monkey_patch()") for e in found["evidence"])
        assert found["remedy"].endswith("move the call at AgentLocator/main.py:%d up there." % line)
    else:
        assert "2 eventlet.monkey_patch() calls in the package: AgentLocator/__init__.py:2, AgentLocator/main.py:" in \
            " ".join(found["evidence"])
        assert any(e.startswith("the dry import called eventlet.monkey_patch() 2 times") for e in found["evidence"])
        assert found["remedy"].endswith("remove the call at AgentLocator/__init__.py:2.")
    assert "as the first statements of AgentLocator/main.py" in found["remedy"]
    assert report["verdict"] == "degraded"


def test_incompatible_versions_and_the_sync_fork(services, tmp_path, port):
    # gunicorn 25 refuses eventlet 0.33.3 (the runbook's "recommended" version) at master start.
    python = venv(*SERVER, "eventlet==0.33.3")
    env_file = tmp_path / "service.env"
    env_file.write_text("PORT=%d\nEVENTLET_NO_GREENDNS=yes\nEVENTLET_HUB=selects\n" % port)
    service = eventlet_service(services, tmp_path, port, env={"EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"},
                               python=python, ready=False)
    assert exits_by_itself(service) == 1
    report = run(tmp_path, service.app_dir, doctor_python=python, doctor_env_file=str(env_file))
    assert report["verdict"] == "down"
    assert eventlet_causes(report) == ["eventlet_incompatible"]
    found = cause(report, "eventlet_incompatible")
    assert found["severity"] == "fail"
    evidence = "\n".join(found["evidence"])
    assert "gunicorn 25.3.0, eventlet 0.33.3" in found["evidence"][0]
    assert "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher" in evidence
    assert "%s: RuntimeError: eventlet worker requires eventlet 0.40.3 or higher" % (tmp_path / "gunicorn.log") in evidence
    assert "%s -m pip install 'gunicorn>=25,<26' 'eventlet>=0.40.3' 'greenlet>=3.0.3'" % python in found["remedy"]
    assert '"eventlet >= 0.33.3" is out of date' in found["remedy"]
    # The runbook's fork: sync boots here, eventlet does not -> keep sync, and how.
    boot = checks(report)["eventlet boot"]
    assert boot["status"] == "fail" and "sync boots" in boot["detail"]
    assert "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher" in boot["detail"]
    assert "keep the service on -k sync" in found["remedy"] and "-k sync" in found["remedy"]
    assert any(e.startswith("sync boots, eventlet does not:") for e in found["evidence"])
    assert "eventlet_incompatible" in cause_ids(report, "fail")
