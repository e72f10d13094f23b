"""The roles only carry out what Python decides (issue 12 point 2): the stabilize and gunicorn_service roles
together hold at most 35 tasks, and no Jinja expression anywhere in roles/ is longer than 120 characters.

Counted from the YAML as Ansible reads it (a folded `>-` scalar is one expression): every `{{ ... }}` in any value,
and the bare expressions of `when`, `that`, `failed_when`, `changed_when` and `until`."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TASK_LIMIT = 35
EXPRESSION_LIMIT = 120
BARE = ('when', 'that', 'failed_when', 'changed_when', 'until')
BLOCKS = ('block', 'rescue', 'always')
EXPRESSION = re.compile(r'\{\{.*?\}\}', re.S)


def task_lists(role):
    for sub in ('tasks', 'handlers'):
        for path in sorted((ROOT / 'roles' / role / sub).glob('*.yml')):
            yield path, yaml.safe_load(path.read_text()) or []


def count_tasks(tasks):
    """Tasks that run something; a block only groups the tasks it holds."""
    count = 0
    for task in tasks or []:
        if any(key in task for key in BLOCKS):
            count += sum(count_tasks(task.get(key)) for key in BLOCKS)
        else:
            count += 1
    return count


def expressions(value, key=None):
    """Each Jinja expression in a YAML value, whitespace folded as Jinja sees it."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from expressions(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item, key)
    elif isinstance(value, str):
        found = EXPRESSION.findall(value)
        if not found and key in BARE:
            found = [value]
        for text in found:
            yield ' '.join(text.split())


def role_expressions():
    for path in sorted((ROOT / 'roles').glob('*/*/*.yml')):
        for text in expressions(yaml.safe_load(path.read_text())):
            yield path.relative_to(ROOT), text


def test_the_stabilize_and_gunicorn_service_roles_hold_at_most_35_tasks():
    counts = dict((str(path.relative_to(ROOT)), count_tasks(tasks))
                  for role in ('stabilize', 'gunicorn_service') for path, tasks in task_lists(role))
    assert sum(counts.values()) <= TASK_LIMIT, counts


def test_no_jinja_expression_in_the_roles_is_longer_than_120_characters():
    long = ['%s: %d: %s' % (path, len(text), text) for path, text in role_expressions() if len(text) > EXPRESSION_LIMIT]
    assert long == []


def test_the_counting_sees_blocks_folded_scalars_and_bare_conditions():
    tasks = yaml.safe_load('- {name: a, block: [{name: b}, {name: c}], rescue: [{name: d}]}\n- {name: e}\n')
    assert count_tasks(tasks) == 4
    folded = yaml.safe_load('x: >-\n  {{ a\n     + b }}\nwhen: a and b\n')
    assert sorted(expressions(folded)) == ['a and b', '{{ a + b }}']
