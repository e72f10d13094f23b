"""plugin_utils/role_vars.py: a module's options read from the play's variables, as the task's "{{ doctor_x }}" did."""

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import ARGUMENT_SPEC
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.role_vars import options_from_vars


def fill(args, task_vars):
    templar = Templar(loader=DataLoader(), variables=task_vars)
    return options_from_vars(args, ARGUMENT_SPEC, "doctor_", task_vars, templar)


def test_an_option_the_task_does_not_set_comes_from_its_variable():
    task_vars = {"doctor_app": "main:app", "doctor_chdir": "/srv/app", "doctor_dry_import": False,
                 "doctor_boot_timeout": 12, "app": "not this one", "doctor_unknown": "not an option"}
    assert fill({}, task_vars) == {"app": "main:app", "chdir": "/srv/app", "dry_import": False, "boot_timeout": 12}


def test_the_tasks_own_argument_wins():
    assert fill({"app": "other:app"}, {"doctor_app": "main:app"}) == {"app": "other:app"}


def test_an_empty_or_null_variable_is_left_out_as_omit_did():
    # The roles' defaults are "" for "not set": the module's own default (or none) applies.
    assert fill({}, {"doctor_env_file": "", "doctor_voice_pace": None, "doctor_port": ""}) == {}


def test_a_number_for_a_string_option_is_passed_as_a_string():
    # doctor_port: 8000 in an inventory; the module's port is a string (no conversion warning on the host).
    assert fill({}, {"doctor_port": 8000, "doctor_voice_pace": 4}) == {"port": "8000", "voice_pace": 4}


def test_a_variable_that_is_a_template_is_rendered():
    task_vars = {"base": "/srv", "doctor_chdir": trust_as_template("{{ base }}/app")}
    assert fill({}, task_vars) == {"chdir": "/srv/app"}
