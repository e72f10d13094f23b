# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module's options read from the play's variables by its action plugin, rather than written into the task.

Each templated task argument ("{{ doctor_app }}") is compiled by Jinja in the worker that runs the task, for every
host: at 100 hosts the diagnose role's 30 arguments cost more controller CPU than anything else it does. Read by
name here, a variable costs a dictionary lookup, and a compile only when its value is itself a template."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.six import integer_types


def options_from_vars(args, spec, prefix, task_vars, templar):
    """`args` plus, for each option of `spec` they do not set, the variable `prefix` + option when it is defined and
    neither empty nor null (as the roles' "{{ doctor_x or omit }}" did) -> a new dict. A number given to a string
    option is passed as a string (the task's "{{ doctor_port | string }}" did that)."""
    filled = dict(args)
    for name, option in spec.items():
        if name in filled or prefix + name not in task_vars:
            continue
        value = templar.template(task_vars[prefix + name])
        if value is None or value == '':
            continue
        if option.get('type') == 'str' and isinstance(value, integer_types) and not isinstance(value, bool):
            value = str(value)
        filled[name] = value
    return filled
