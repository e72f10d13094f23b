# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writers: a report -> the ladder printed at the end of a run, and the Markdown summary. Format only."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import textwrap

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.fleet import md_cell, one_line

MARK = {'pass': 'ok  ', 'warn': 'WARN', 'fail': 'FAIL', 'skip': 'skip'}
WIDTH = 120          # columns of one ladder line; what does not fit is in the report
MORE = ' ...'        # ends a line shortened at a word boundary
EVIDENCE_LINES, REMEDY_LINES = 2, 3


def _plain(text):
    """One line of plain words: host output may carry newlines, runs of spaces and terminal escapes."""
    return one_line(text, len(str(text or '')))


def _fit(text, room):
    """`text` whole when it fits in `room` columns, else shortened at the last word boundary."""
    text = _plain(text)
    if len(text) <= room:
        return text
    cut = text[:room - len(MORE) + 1]
    space = cut.rfind(' ')
    cut = cut[:space] if space > room // 2 else cut[:-1]   # a very long word is cut, not dropped
    return cut.rstrip(' ,;:') + MORE


def _wrap(first, text, indent, lines):
    """`first` + `text` over at most `lines` lines of WIDTH, continuation lines indented."""
    return textwrap.wrap(_plain(text), WIDTH, initial_indent=first, subsequent_indent=' ' * indent,
                         break_long_words=True, break_on_hyphens=False, max_lines=lines, placeholder=MORE)


def _headline(report):
    first = report['failed_layer']
    text = '%s: %s' % (report['host'], report['verdict'].upper())
    if first:
        text += ' - first failing layer: %s' % first
    return text


def _layer_line(layer, causes):
    ids = [c['id'] for c in causes if c['layer'] == layer['name']]
    # The first check that explains the layer's status; notes are context, not the headline.
    telling = [c for c in layer['checks'] if not (c.get('detail') or '').startswith('note:')] or layer['checks']
    worst = next((c for c in telling if c['status'] == layer['status']), None)
    detail = ', '.join(ids) if ids else (worst['detail'] if worst else '')
    head = '  %-8s %s  ' % (layer['name'], MARK[layer['status']])
    return head + _fit(detail, WIDTH - len(head))


def ladder(report, paths=None):
    """A few lines per host, none wider than WIDTH: the verdict, one line per layer, each cause's first
    evidence and its remedy. A line that had to be shortened ends in MORE; the report has it whole."""
    lines = [_fit(_headline(report), WIDTH)]
    lines += [_layer_line(layer, report['causes']) for layer in report['layers']]
    history = report.get('restart_history') or {}
    if history.get('pattern'):
        who = (history.get('runner') or {}).get('text')
        lines += _wrap('  restarts: ', history['pattern'] + (' - by %s' % who if who else ''), 4, EVIDENCE_LINES)
    for cause in report['causes']:
        lines += _wrap('  - %s [%s/%s]: ' % (cause['id'], cause['layer'], cause['severity']),
                       cause['evidence'][0] if cause['evidence'] else '', 4, EVIDENCE_LINES)
        lines += _wrap('    fix: ', cause['remedy'], 9, REMEDY_LINES)
    if any(line.endswith(MORE) for line in lines):
        lines.append('  (lines ending in "%s" are shortened: the report below has them whole)' % MORE.strip())
    lines += ['  report: %s' % path for path in paths or []]   # a path is never shortened
    return lines


def markdown(report):
    """The human summary written beside the JSON report. Every value from the host (and the host's name)
    goes through md_cell, as in the fleet's audit.md: one line, no HTML, no link, no pipe that adds a column."""
    out = ['# %s' % md_cell(_headline(report)), '']
    out.append('Port %s (from %s). Layers in ladder order; the first failing one is where to act.' % (
        md_cell('%s' % report.get('port')), md_cell('%s' % report.get('port_source'))))
    out += ['', '| layer | status | checks |', '|---|---|---|']
    for layer in report['layers']:
        checks = '<br>'.join(md_cell('%s: %s%s' % (c['name'], c['status'], (' - ' + c['detail']) if c.get('detail') else ''))
                             for c in layer['checks'])
        out.append('| %s | %s | %s |' % (layer['name'], layer['status'], checks))
    out += _history_markdown(report.get('restart_history'))
    out += ['', '## Causes', '']
    if not report['causes']:
        out.append('None found.')
    for cause in report['causes']:
        out.append('### `%s` (%s, %s)' % (cause['id'], cause['layer'], cause['severity']))
        out.append('')
        out += ['- %s' % md_cell(e) for e in cause['evidence']]
        out += ['', '**Remedy:** %s' % md_cell(cause['remedy'])]
        refs = []
        if cause.get('runbook_step'):
            refs.append('runbook step %s' % cause['runbook_step'])
        if cause.get('runbook_cause'):
            refs.append('runbook cause %s' % cause['runbook_cause'])
        if cause.get('twilio_error'):
            refs.append('Twilio error %s' % cause['twilio_error'])
        if refs:
            out += ['', '(%s)' % ', '.join(refs)]
        out.append('')
    return '\n'.join(out) + '\n'


def _history_markdown(history):
    """The restart history: its pattern, who restarts the masters, one line per master."""
    if not history:
        return []
    out = ['', '## Restart history', '', md_cell(history['pattern'] or 'No restart in the last 10 minutes of the log.')]
    runner = history.get('runner')
    if runner:
        out += ['', 'Restarted by: %s' % md_cell(runner['text'])]
    for checker in history.get('health_checkers') or []:
        out += ['', 'Health check on another port: pid %d asks port %s: %s' % (
            checker['pid'], md_cell(', '.join(str(p) for p in checker['ports'])), md_cell(checker['command']))]
    out += [''] + ['- %s' % md_cell(line) for line in history['timeline']]
    return out
