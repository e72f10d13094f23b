"""second_programs.choose: which masters run by the managed supervisord are a second program of the app, read from
real config files; everything else stays a conflict, with the reason."""

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import second_programs

APP = "AgentLocator.main:app"


def setup(tmp_path, files, include="conf.d/*.conf"):
    app = tmp_path / "app"
    app.mkdir(parents=True)
    (tmp_path / "conf.d").mkdir()
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[supervisord]\n\n[include]\nfiles = %s\n" % include)
    for name, text in files.items():
        (tmp_path / "conf.d" / name).write_text(text.replace("APPDIR", str(app)))
    return str(app), str(conf)


def conflict(pid):
    return {"pid": pid, "kind": "gunicorn_master", "cmdline": "gunicorn", "create_time": 1.0, "reason": "second runner"}


def status(lines):
    return lambda *args: (0, lines)


PROGRAM = "[program:%s]\ncommand=gunicorn %s -b :1\ndirectory=APPDIR\n"
CTL = "agentlocator RUNNING pid 10, uptime 0:01:00\nold RUNNING pid 11, uptime 0:01:00\n"


def test_a_second_program_of_the_app_is_chosen_and_the_managed_one_never(tmp_path):
    app, conf = setup(tmp_path, {"agentlocator.conf": PROGRAM % ("agentlocator", APP), "old.conf": PROGRAM % ("old", APP)})
    disable, left = second_programs.choose([conflict(10), conflict(11)], APP, app, conf, "agentlocator", status(CTL))
    assert [(d["pid"], d["program"]) for d in disable] == [(11, "old")]
    assert disable[0]["file"].endswith("conf.d/old.conf")
    assert left == []   # 10 is the service's own master (its program restarted it since it was found): no conflict


def test_a_master_behind_a_programs_script_is_known_by_the_name_supervisord_gave_it(tmp_path):
    # `command=bash start.sh` without exec: supervisord's pid is the shell's, the master names its program in its
    # environment (SUPERVISOR_PROCESS_NAME, the runner's `program`).
    app, conf = setup(tmp_path, {"old.conf": PROGRAM % ("old", APP), "voice.conf": PROGRAM % ("voice", APP)})
    behind = [dict(conflict(21), program="voice"), dict(conflict(22), program="old"), conflict(23)]
    disable, left = second_programs.choose(behind, APP, app, conf, "voice", status(CTL))
    assert [(d["pid"], d["program"]) for d in disable] == [(22, "old")]
    assert [c["pid"] for c in left] == [23]   # no program known: stays a conflict


def test_a_program_of_another_app_or_a_shared_file_is_left_with_the_reason(tmp_path):
    shared = PROGRAM % ("old", APP) + "\n[program:web]\ncommand=python -m http.server\n"
    app, conf = setup(tmp_path, {"old.conf": shared})
    disable, left = second_programs.choose([conflict(11)], APP, app, conf, "agentlocator", status(CTL))
    assert disable == [] and "holds more than the program old" in left[0]["reason"]

    other, conf2 = setup(tmp_path / "b", {"old.conf": PROGRAM % ("old", "shop.wsgi:app")})
    disable, left = second_programs.choose([conflict(11)], APP, other, conf2, "agentlocator", status(CTL))
    assert disable == [] and "does not run" in left[0]["reason"]


def test_an_include_glob_that_would_still_match_the_renamed_file_is_refused(tmp_path):
    app, conf = setup(tmp_path, {"old.conf": PROGRAM % ("old", APP)}, include="conf.d/*")
    disable, left = second_programs.choose([conflict(11)], APP, app, conf, "agentlocator", status(CTL))
    assert disable == [] and "would still be included" in left[0]["reason"]
