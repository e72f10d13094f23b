"""service_control.choose_supervisord: which running supervisord gets the app's program, read from real configs."""

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_control

APP = "AgentLocator.main:app"
HEAD = "[supervisord]\nlogfile=/dev/null\n\n[include]\nfiles = conf.d/*.conf\n"


def make_sup(base, pid, programs):
    """A supervisord config in `base` with one include file per program -> the running_supervisords() entry."""
    (base / "conf.d").mkdir(parents=True)
    conf = base / "supervisord.conf"
    conf.write_text(HEAD)
    for name, body in programs.items():
        (base / "conf.d" / ("%s.conf" % name)).write_text("[program:%s]\n%s" % (name, body))
    return {"pid": pid, "conf": str(conf), "supervisorctl": None}


@pytest.fixture
def app_dir(tmp_path):
    path = tmp_path / "app"
    path.mkdir()
    return path


def test_the_supervisord_with_a_program_of_this_app_in_this_directory_is_chosen(tmp_path, app_dir):
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    foreign = make_sup(tmp_path / "a", 101, {"agentlocator": "command=gunicorn %s\ndirectory=%s\n" % (APP, other_dir)})
    ours = make_sup(tmp_path / "b", 102, {"agentlocator": "command=gunicorn %s\ndirectory=%s\n" % (APP, app_dir)})
    assert service_control.choose_supervisord([foreign, ours], APP, str(app_dir)) == (ours, None)
    assert service_control.choose_supervisord([ours, foreign], APP, str(app_dir)) == (ours, None)


def test_a_program_that_runs_a_script_naming_the_app_counts(tmp_path, app_dir):
    script = tmp_path / "svc" / "run.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nexec python -m gunicorn %s -b 0.0.0.0:${PORT}\n" % APP)
    foreign = make_sup(tmp_path / "a", 101, {"shop": "command=gunicorn shop.wsgi:app\ndirectory=/srv/shop\n"})
    ours = make_sup(tmp_path / "b", 102, {"agentlocator": "command=%s\ndirectory=%s\n" % (script, app_dir)})
    assert service_control.choose_supervisord([foreign, ours], APP, str(app_dir)) == (ours, None)


def test_several_and_none_the_apps_is_refused_with_what_to_set(tmp_path, app_dir):
    foreign = make_sup(tmp_path / "a", 101, {"shop": "command=gunicorn shop.wsgi:app\ndirectory=/srv/shop\n"})
    # Same app spec, another checkout: not this app's supervisord either.
    other = make_sup(tmp_path / "b", 102, {"agentlocator": "command=gunicorn %s\ndirectory=/srv/elsewhere\n" % APP})
    sup, error = service_control.choose_supervisord([foreign, other], APP, str(app_dir))
    assert sup is None
    assert "2 supervisords run" in error and "doctor_supervisord_conf" in error and "\n" not in error
    assert foreign["conf"] in error and other["conf"] in error


def test_two_with_a_program_of_the_app_are_refused_too(tmp_path, app_dir):
    program = {"agentlocator": "command=gunicorn %s\ndirectory=%s\n" % (APP, app_dir)}
    first, second = make_sup(tmp_path / "a", 101, program), make_sup(tmp_path / "b", 102, program)
    sup, error = service_control.choose_supervisord([first, second], APP, str(app_dir))
    assert sup is None and "each has a program of %s" % APP in error


def test_the_one_that_runs_the_app_now_wins_and_a_lone_one_is_kept(tmp_path, app_dir):
    foreign = make_sup(tmp_path / "a", 101, {"shop": "command=gunicorn shop.wsgi:app\ndirectory=/srv/shop\n"})
    other = make_sup(tmp_path / "b", 102, {})
    assert service_control.choose_supervisord([foreign, other], APP, str(app_dir), runner_pid=102) == (other, None)
    assert service_control.choose_supervisord([foreign], APP, str(app_dir)) == (foreign, None)
    assert service_control.choose_supervisord([], APP, str(app_dir)) == (None, None)


def test_program_files_are_read_bounded_and_comments_ignored(tmp_path, app_dir):
    sup = make_sup(tmp_path / "a", 101, {"agentlocator": "; command=gunicorn %s\ncommand=gunicorn shop:app\n"
                                                         "directory=%s\n" % (APP, app_dir)})
    (tmp_path / "a" / "conf.d" / "huge.conf").write_text("[program:x]\ncommand=" + "y" * (2 << 20) + "\n")
    programs = service_control.supervisord_programs(sup["conf"])
    assert [p["name"] for p in programs if p["name"] == "agentlocator"] == ["agentlocator"]
    assert not any(service_control.program_runs_app(p, APP, str(app_dir)) for p in programs)
