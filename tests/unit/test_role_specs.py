"""One source for each default and option: a role's defaults/main.yml, its meta/argument_specs.yml and, for
the diagnosis' inputs, the probe modules' doc fragment (plugins/doc_fragments/probe.py) must say the same.

Fails when they drift: a default changed in one place only, an option added to one of them only."""

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in ROOT.glob('roles/*/meta/argument_specs.yml'))
# The role's "" is "not set" where the module's option has no default.
UNSET = ('', None)
# Where a role's type legitimately differs from the module's: role argument validation expands no paths (the
# module does), and an inventory gives a port as an int, which the module's str option converts.
SAME_TYPE = {('str', 'path'), ('raw', 'str')}
# Where the role's default is not the module's, and why.
OWN_DEFAULT = {
    'voice_pace': "the role's 4 (every playbook: 4x real time; inventory or -e overrides it), the module's 1.0",
    'systemd_unit_dir': "the role's /etc/systemd/system (read first: the standard directories' own order), the "
                        "stabilize role's default too, so its first diagnosis and its plan see one value; the module's none",
}
# The diagnose role's inputs that are the report action's (controller side), not the probes'.
REPORT_OPTIONS = {'report_dir', 'ca_bundle', 'validate_certs'}


def load(path):
    return yaml.safe_load(path.read_text()) or {}


def defaults(role):
    path = ROOT / 'roles' / role / 'defaults' / 'main.yml'
    return load(path) if path.exists() else {}


def specs(role):
    return load(ROOT / 'roles' / role / 'meta' / 'argument_specs.yml')['argument_specs']


def module_options(path, attribute='DOCUMENTATION', cls=None):
    spec = importlib.util.spec_from_file_location(path.stem, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    holder = getattr(module, cls) if cls else module
    return yaml.safe_load(getattr(holder, attribute))['options']


FRAGMENT = module_options(ROOT / 'plugins' / 'doc_fragments' / 'probe.py', cls='ModuleDocFragment')
REPORT = module_options(ROOT / 'plugins' / 'modules' / 'report.py')


@pytest.mark.parametrize('role', ROLES)
def test_every_default_is_documented_with_the_same_value(role):
    options = specs(role)['main']['options']
    for name, value in defaults(role).items():
        assert name in options, '%s: %s has a default but no argument_specs entry' % (role, name)
        assert 'default' in options[name], '%s: %s has no default in argument_specs (defaults: %r)' % (role, name, value)
        assert options[name]['default'] == value, '%s: %s defaults to %r, argument_specs says %r' % (
            role, name, value, options[name]['default'])


@pytest.mark.parametrize('role', ROLES)
def test_every_documented_option_has_a_default_or_is_required(role):
    own, diagnose = defaults(role), defaults('diagnose')
    for entry, spec in specs(role).items():
        for name, option in (spec.get('options') or {}).items():
            if option.get('required'):
                continue
            # The stabilize role loads the diagnose role's defaults for the diagnosis' inputs.
            found = own if name in own else diagnose
            assert name in found, '%s (%s): %s is neither required nor given a default' % (role, entry, name)
            assert option.get('default', found[name]) == found[name], '%s (%s): %s' % (role, entry, name)


@pytest.mark.parametrize('role', ROLES)
def test_an_input_shared_with_the_diagnose_role_is_documented_alike(role):
    diagnose = specs('diagnose')['main']['options']
    for name, option in specs(role)['main']['options'].items():
        if role == 'diagnose' or name not in diagnose:
            continue
        assert option['type'] == diagnose[name]['type'], '%s: %s' % (role, name)
        assert set(option.get('choices') or []) <= set(diagnose[name].get('choices') or option.get('choices') or []), \
            '%s: %s allows a value the diagnose role does not' % (role, name)


def test_the_diagnose_role_and_the_probe_fragment_agree():
    options = specs('diagnose')['main']['options']
    role_defaults = defaults('diagnose')
    for name, documented in FRAGMENT.items():
        variable = 'doctor_' + name
        assert variable in options, 'the fragment documents %s, the diagnose role has no %s' % (name, variable)
        assert 'C(%s)' % variable in str(documented['description']), '%s: the fragment does not name %s' % (name, variable)
        role = options[variable]
        types = (role['type'], documented.get('type', 'str'))
        assert types[0] == types[1] or types in SAME_TYPE, '%s: type %s in the role, %s in the fragment' % ((name,) + types)
        assert role.get('choices') == documented.get('choices'), '%s: the choices differ' % name
        assert bool(role.get('required')) == bool(documented.get('required')), name
        if role.get('required') or name in OWN_DEFAULT:
            continue
        module_default = documented.get('default')
        same = role_defaults[variable] == module_default or (role_defaults[variable] in UNSET and module_default is None)
        assert same, '%s: the role defaults to %r, the modules to %r' % (name, role_defaults[variable], module_default)


def test_every_diagnose_input_is_documented_for_the_module_that_takes_it():
    for variable in specs('diagnose')['main']['options']:
        name = variable[len('doctor_'):]
        if name in REPORT_OPTIONS:
            default = REPORT[name].get('default')
            role_default = defaults('diagnose')[variable]
            assert role_default == default or (role_default in UNSET and default is None), variable
        else:
            assert name in FRAGMENT, '%s is not documented in plugins/doc_fragments/probe.py' % variable


def test_the_exceptions_are_still_needed():
    for name in OWN_DEFAULT:
        assert defaults('diagnose')['doctor_' + name] != FRAGMENT[name].get('default'), name


def test_every_diagnose_input_reaches_the_action_that_reads_it_by_name():
    # The diagnose role's tasks pass vars_prefix: doctor_ - the probe and report actions read doctor_<option>
    # themselves, so a variable whose name is not an option of one of them would be silently ignored.
    from ansible_collections.sre.gunicorn_doctor.plugins.action.report import ActionModule as Report
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import ARGUMENT_SPEC

    read = set(ARGUMENT_SPEC) | set(Report.FROM_VARS)
    for name in ('diagnose.yml', 'audit.yml'):   # each passes it to the probe and to the report
        tasks = (ROOT / 'roles' / 'diagnose' / 'tasks' / name).read_text()
        assert tasks.count('vars_prefix: doctor_') == 2, name
    for variable in specs('diagnose')['main']['options']:
        assert variable[len('doctor_'):] in read, '%s is read by neither the probe nor the report action' % variable
    assert REPORT_OPTIONS <= set(Report.FROM_VARS)
