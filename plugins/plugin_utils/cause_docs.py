# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/causes.md, rendered from the cause table the verdict uses (causes.CAUSES).

One page with every cause id: its meaning, the evidence the probe uses, the remedy template, the
runbook step and numbered cause, the Twilio error where one applies, and where the runbook is out
of date (only what causes.py and eventlet_compat.py already state). scripts/gen_cause_docs.py
writes the page; a unit test compares it with `render_markdown()`, so docs and code cannot drift.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import string

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import eventlet_compat
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import CAUSES, LAYERS

SOURCE = 'plugins/module_utils/domain/causes.py'
SCRIPT = 'scripts/gen_cause_docs.py'
REGENERATE = '.venv/bin/python %s' % SCRIPT

# What the verdict fills into every remedy (the keys of verdict._values; a unit test keeps them equal).
HOST_VALUES = (
    ('port', 'the port every check uses: $PORT as the port layer resolved it (8000 when unset or invalid)'),
    ('source', 'where that PORT came from'),
    ('raw', 'the PORT value as written there'),
    ('env_where', "where the service environment is set: doctor_env_file, else the place the master's runner takes "
                  "it from (the unit's Environment=/EnvironmentFile=, the supervisord program's environment=, the "
                  "shell or cron job that starts it)"),
    ('command', 'the canonical gunicorn command, run in the app directory with PORT set'),
    ('healthz_path', 'doctor_healthz_path'),
    ('env_file', 'doctor_env_file'),
    ('bind_change', "where and how to bind to $PORT: the config file and line of the master's bind, GUNICORN_CMD_ARGS and "
                    "where it is set, or the runner's command line (unit ExecStart=, supervisord command=)"),
    ('timeout_change', "where the master's timeout is set (the same places), with SECONDS for the new value"),
    ('dry_import_command', 'a one-line command that imports the app in its own python and GETs the health path '
                           'through test_client'),
)

_OPEN, _CLOSE = '\x00', '\x01'   # marks a placeholder until the Markdown escaping knows if it is in a code span
# An underscore inside a word never starts emphasis (EVENTLET_HUB stays readable); one at a word's edge does (__main__).
_EDGE_UNDERSCORE = re.compile(r'(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])')


def _gunicorn_rows():
    """The last gunicorn line with an eventlet worker and the first without one."""
    rows = eventlet_compat.GUNICORN_ROWS
    return [r for r in rows if r['worker']][-1], next(r for r in rows if not r['worker'])


def runbook_corrections():
    """Where the runbook's words are out of date. `stated`: the words of the cause table (meaning or
    remedy of each of `causes`) that already say so; `facts` and `sources` come from eventlet_compat."""
    last, removed = _gunicorn_rows()
    hubs = ', '.join(eventlet_compat.VALID_HUBS)
    return (
        {'step': '4.1', 'runbook': 'eventlet >= 0.33.3', 'causes': ('eventlet_incompatible',),
         'stated': 'The runbook\'s "eventlet >= 0.33.3" is out of date',
         'facts': 'gunicorn >=%s,<%s refuses eventlet older than %s and gunicorn >=%s has no eventlet worker; the pins '
                  'today are %s and %s' % (last['gunicorn'][0], last['gunicorn'][1], last['eventlet'][0],
                                           removed['gunicorn'][0], eventlet_compat.RECOMMENDED['gunicorn'],
                                           eventlet_compat.RECOMMENDED['eventlet']),
         'sources': tuple(last['sources']) + tuple(s for s in removed['sources'] if s not in last['sources'])},
        {'step': '4.1', 'runbook': 'EVENTLET_NO_GREENDNS=1', 'causes': ('eventlet_env_missing',),
         'stated': "the runbook's =1 leaves green DNS on",
         'facts': 'eventlet turns green DNS off only when EVENTLET_NO_GREENDNS is "%s" (any case); 1 leaves it on'
                  % eventlet_compat.GREENDNS_OFF,
         'sources': ('greendns',)},
        {'step': '4.1', 'runbook': 'EVENTLET_HUB=select', 'causes': ('eventlet_env_missing', 'eventlet_env_invalid'),
         'stated': 'the runbook\'s "select"',
         'facts': 'EVENTLET_HUB=NAME imports eventlet.hubs.NAME and there is no select hub: the hubs are %s (the remedy '
                  'sets %s)' % (hubs, eventlet_compat.RECOMMENDED_HUB),
         'sources': ('hubs',)},
    )


# --- Markdown ---------------------------------------------------------------------------------------------
def _escape(text):
    """Plain text for Markdown: outside `code spans` a '<' would open an HTML tag and hide the text, a
    '*' or an edge '_' start emphasis. A placeholder reads as `<name>` (code) outside a span, <name> inside one."""
    pieces = text.split('`')
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            piece = piece.replace('\\', '\\\\').replace('<', '\\<').replace('*', '\\*')
            piece = _EDGE_UNDERSCORE.sub(r'\\_', piece)
            piece = piece.replace(_OPEN, '`<').replace(_CLOSE, '>`')
        else:
            piece = piece.replace(_OPEN, '<').replace(_CLOSE, '>')
        pieces[i] = piece
    return '`'.join(pieces)


def placeholders(template):
    """The `str.format` keys a remedy template uses, in order of appearance."""
    return [field for dummy, field, dummy_spec, dummy_conv in string.Formatter().parse(template) if field is not None]


def readable_remedy(template):
    """A remedy template as Markdown: `{port}` -> `<port>`, `{raw!r}` -> `<raw>`, `{{` -> `{`."""
    text = ''.join(literal + (_OPEN + field + _CLOSE if field is not None else '')
                   for literal, field, dummy_spec, dummy_conv in string.Formatter().parse(template))
    return _escape(text)


def _runbook(meta):
    text = 'step %s' % meta['runbook_step']
    if meta['runbook_cause'] is not None:
        text += ', numbered cause %d of section 6' % meta['runbook_cause']
    return text


def _ids(layer):
    return [cause_id for cause_id, meta in CAUSES.items() if meta['layer'] == layer]


def _header():
    return '\n'.join([
        '# Cause ids',
        '',
        'Generated from `%s` by `%s`; do not edit: change the table, then run `%s` (`--check` exits 1 while this page '
        'is stale).' % (SOURCE, SCRIPT, REGENERATE),
        '',
        'Every cause in a report (`causes[]` of report.schema.json) has one of these ids. Severity, runbook step and '
        'cause and Twilio error are the table\'s defaults: a report\'s cause carries other values when its evidence says more '
        '(the severity of a nearly full disk, the Twilio error this instance shows).',
        '',
        'Layer order (the ladder; `failed_layer` is the first layer that fails): %s.' % ', '.join(
            '`%s`' % layer for layer in LAYERS),
    ])


def _index():
    lines = ['## Index', '', '| id | layer | severity | runbook | Twilio error |', '|---|---|---|---|---|']
    for layer in LAYERS:
        for cause_id in _ids(layer):
            meta = CAUSES[cause_id]
            cause = '' if meta['runbook_cause'] is None else ', cause %d' % meta['runbook_cause']
            lines.append('| [`%s`](#%s) | %s | %s | %s%s | %s |' % (
                cause_id, cause_id, layer, meta['severity'], meta['runbook_step'], cause, meta['twilio_error'] or ''))
    return '\n'.join(lines)


def _placeholders_section():
    host = [key for key, dummy in HOST_VALUES]
    others = sorted(set(p for meta in CAUSES.values() for p in placeholders(meta['remedy'])) - set(host))
    lines = ['## Remedy placeholders', '',
             'A `<name>` in a remedy is filled with this host\'s value when the report is written. Every remedy can use:',
             '']
    lines += ['- `<%s>`: %s' % (key, _escape(text)) for key, text in HOST_VALUES]
    lines += ['', 'The others (%s) are filled by the layer\'s judge from what this instance\'s evidence shows.' % ', '.join(
        '`<%s>`' % p for p in others)]
    return '\n'.join(lines)


def _cause_section(cause_id):
    meta = CAUSES[cause_id]
    lines = ['### `%s`' % cause_id, '',
             '- **Meaning:** %s' % _escape(meta['meaning']),
             '- **Default severity:** %s' % meta['severity'],
             '- **Evidence:** %s' % _escape(meta['evidence']),
             '- **Remedy:** %s' % readable_remedy(meta['remedy']),
             '- **Runbook:** %s' % _runbook(meta)]
    if meta['twilio_error'] is not None:
        lines.append('- **Twilio error:** %d' % meta['twilio_error'])
    return '\n'.join(lines)


def _layer_section(layer):
    return '\n\n'.join(['## Layer `%s`' % layer] + [_cause_section(cause_id) for cause_id in _ids(layer)])


def _corrections_section():
    lines = ['## Where the runbook is out of date', '',
             'The facts win. The causes named already say so; the facts and their sources are eventlet_compat.py\'s.',
             '']
    for c in runbook_corrections():
        lines.append('- Runbook step %s says `%s`. Facts: %s. Stated in %s.' % (
            c['step'], c['runbook'], _escape(c['facts']), ', '.join('`%s`' % cause_id for cause_id in c['causes'])))
        lines += ['  - %s' % _escape(eventlet_compat.SOURCES[key]) for key in c['sources']]
    return '\n'.join(lines)


def render_markdown():
    """The whole page, as scripts/gen_cause_docs.py writes it to docs/causes.md."""
    parts = [_header(), _index(), _placeholders_section()] + [_layer_section(layer) for layer in LAYERS]
    parts.append(_corrections_section())
    return '\n\n'.join(parts) + '\n'
