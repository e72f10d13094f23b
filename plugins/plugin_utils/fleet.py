# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet view of many host reports: summary, drift since the previous audit, and the writers
(Markdown, JUnit XML, one self-contained HTML page). Pure: reports in, data or text out; no I/O.

The per-host reports are the contract's (`verdict.judge`); a host that has none gets one here:
`unreachable_report` (Ansible could not reach it, or the connection timed out or dropped) or
`not_probed_report` (the probe stopped on its input, e.g. the app is not deployed at doctor_chdir, or
could not run, e.g. no psutil for the host's Python).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re
import shlex
import xml.etree.ElementTree as ET

from collections.abc import Mapping
from html import escape as _html_escape

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import LAYERS
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_files import plain

VERDICTS = ('down', 'unreachable', 'degraded', 'healthy')   # worst first
SEVERITY_RANK = {'fail': 0, 'warn': 1}
STATUS_MARK = {'pass': 'ok', 'warn': 'WARN', 'fail': 'FAIL', 'skip': 'skip'}
EVIDENCE_WIDTH = 200
_CONTROL = re.compile(u'[\u0000-\u001f\u007f-\u009f]')
# Characters XML 1.0 cannot carry, even escaped (log lines may hold any byte).
_XML_INVALID = re.compile(u'[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


# --- reports for hosts the probe could not judge ------------------------------------------------------
def unreachable_report(host, message, kind=None):
    """The contract's report for a host Ansible cannot reach: verdict `unreachable`, no failed layer,
    the connection error as a check's detail (on the first rung of the ladder, which was never probed).
    `error.kind` says what happened: `kind`, else what the message says (`connection_error_kind`)."""
    kind = kind or connection_error_kind(message)
    message = one_line(message, 2000) or 'the host could not be reached'
    return {
        'host': host,
        'verdict': 'unreachable',
        'failed_layer': None,
        'causes': [],
        'layers': [{'name': LAYERS[0], 'status': 'skip',
                    'checks': [{'name': 'connection', 'status': 'fail', 'detail': message}]}],
        'error': {'kind': kind, 'message': message},
    }


# Ansible's ssh connection: a failure carries ssh's stderr after this.
_SSH_STDERR = re.compile(r'(?:can be reached over ssh|to the host via ssh):(.*)$', re.I | re.S)
_SSH_NOISE = re.compile(r'^\s*Warning: Permanently added .*$', re.I | re.M)
_TIMED_OUT = re.compile(r'timed out|Timeout, server \S+ not responding', re.I)
_DROPPED = re.compile(r'closed by remote host|Shared connection to \S+ closed|Connection reset by peer|Broken pipe'
                      r'|client_loop: send disconnect', re.I)
_NOT_CONNECTED = re.compile(r'Connection refused|No route to host|Network is unreachable|Could not resolve'
                            r'|Name or service not known|Permission denied|Host key verification failed'
                            r'|kex_exchange_identification|Connection closed by \S+ port', re.I)


def connection_error_kind(message):
    """What an unreachable host's connection error says happened: `timeout` (no answer in time: to the
    connection, or the SSH banner of an sshd that accepts and stalls), `connection_lost` (an established
    connection dropped while the probe ran), else `unreachable` (refused, no route, name, host key or
    login failed)."""
    message = message or ''
    if _TIMED_OUT.search(message):
        return 'timeout'
    if _NOT_CONNECTED.search(message):
        return 'unreachable'
    if _DROPPED.search(message):
        return 'connection_lost'
    stderr = _SSH_STDERR.search(message)
    # ssh says why it could not connect even at LogLevel=ERROR; it exits 255 without a word when a
    # connection that was up (the module already sent) is cut, or given up by ServerAliveInterval (the
    # ControlPersist master says why, to no one).
    if stderr and not _SSH_NOISE.sub('', stderr.group(1)).strip():
        return 'connection_lost'
    return 'unreachable'


def error_kind(message):
    """`psutil_missing` (the host's Python has no psutil), `not_deployed` (doctor_chdir is missing),
    `input` (another doctor_* input), else `probe`."""
    if re.search(r"required Python library \(psutil\)|No module named '?psutil", message or ''):
        return 'psutil_missing'
    if re.match(r"doctor_chdir=.*is not a directory", message or ''):
        return 'not_deployed'
    if re.search(r'\bdoctor_[a-z_]+\b|Validation of arguments failed|missing required arguments', message or ''):
        return 'input'
    return 'probe'


def not_probed_report(host, message):
    """The report of a reachable host whose probe stopped before observing anything (bad input, the
    app not deployed there, no psutil...). The service cannot be vouched for: verdict `down`, with
    no failed layer and no cause; `error` says why, and the first layer's check carries the message."""
    message = one_line(message, 2000) or 'the diagnosis stopped without a message'
    kind = error_kind(message)
    first = {'name': LAYERS[0], 'status': 'skip',
             'checks': [{'name': 'probe inputs' if kind != 'probe' else 'probe', 'status': 'fail', 'detail': message}]}
    rest = [{'name': name, 'status': 'skip',
             'checks': [{'name': 'not probed', 'status': 'skip', 'detail': 'the probe stopped before this layer'}]}
            for name in LAYERS[1:]]
    return {
        'host': host,
        'verdict': 'down',
        'failed_layer': None,
        'causes': [],
        'layers': [first] + rest,
        'error': {'kind': kind, 'message': message},
    }


def strip_task_prefix(message):
    """Ansible's 'Task failed: ' before a task's error message: the reports quote the error itself."""
    prefix = 'Task failed: '
    return message[len(prefix):] if message.startswith(prefix) else message


def registered_report(result):
    """The diagnosis report in the report action's result (as registered, or as a callback sees it): its
    `report_json` (the text of HOST.json) parsed - one string for Ansible to hand over, not a dict it walks node by
    node - else its `report` (a result from before report_json); None when it holds neither (a skipped task, the
    probe's result, a stabilize record)."""
    if not isinstance(result, Mapping):
        return None
    text = result.get('report_json')
    if isinstance(text, str):
        try:
            report = json.loads(text)
        except ValueError:
            return None
    else:
        report = plain(result['report']) if isinstance(result.get('report'), Mapping) else None
    return report if isinstance(report, dict) and 'verdict' in report and 'layers' in report else None


def audit_fact(report):
    """The host fact `doctor_audit` audit.yml keeps for each host: its verdict, first failing layer, cause ids and
    why there is no diagnosis (None when there is one)."""
    return {'verdict': report['verdict'], 'failed_layer': report.get('failed_layer'),
            'causes': [c['id'] for c in report.get('causes') or []],
            'error': (report.get('error') or {}).get('message')}


# error kind -> (why there is no diagnosis, what to do), for HOST.md.
ERROR_TEXT = {
    'unreachable': ('Ansible could not reach the host',
                    'Check that the host is up and that Ansible can log in (ansible HOST -m ping), then audit again.'),
    'timeout': ('the host did not answer in time',
                'The host accepted the connection, or had been answering, and then stalled: check its load, sshd '
                'and network (ansible HOST -m ping), then audit it again (--limit @doctor-reports/audit.retry).'),
    'connection_lost': ('the connection to the host dropped while the probe ran (cut, or given up by ssh '
                        'when the host stopped answering its keepalives)',
                        'Check the host (load, a frozen VM), sshd and the network path to it (an sshd restart, a '
                        'firewall or NAT timeout cuts sessions), then audit it again (--limit @doctor-reports/audit.retry).'),
    'psutil_missing': ("the host's Python has no psutil, which the probe needs",
                       'Install psutil for the interpreter named above (pip install psutil, or the python3-psutil '
                       'package), or point ansible_python_interpreter at a Python 3.9+ that has it, then audit again.'),
    'not_deployed': ('the app is not deployed at doctor_chdir on this host',
                     'Deploy the app there, or correct doctor_chdir (or the inventory) for this host, then audit again.'),
    'input': ('the probe stopped on its input', 'Correct the variable named above for this host, then audit again.'),
}


def error_markdown(report):
    """HOST.md for a host with no diagnosis (unreachable, or the probe stopped on its input)."""
    error = report['error']
    why, next_step = ERROR_TEXT.get(error['kind'], (
        'the probe failed', 'Run diagnose.yml on this host with -vvv to see the whole error.'))
    return '\n'.join([
        '# %s: %s' % (md_cell(report['host']), verdict_label(report).upper()), '',
        'No diagnosis: %s.' % why,
        '', '    %s' % error['message'], '',
        next_step, ''])


# --- one host in one line --------------------------------------------------------------------------------
def one_line(text, width=EVIDENCE_WIDTH):
    """One line, no control characters (no terminal escapes in the console), at most `width` characters."""
    text = ' '.join(_CONTROL.sub(' ', str(text or '')).split())
    return text if len(text) <= width else text[:width - 1] + u'\u2026'


def top_cause(report):
    """The cause to act on first: a fail cause of the failed layer, else any fail cause, else the first."""
    causes = report.get('causes') or []
    for wanted in (lambda c: c['severity'] == 'fail' and c['layer'] == report.get('failed_layer'),
                   lambda c: c['severity'] == 'fail',
                   lambda c: True):
        for cause in causes:
            if wanted(cause):
                return cause
    return None


def evidence_line(report):
    """One line a human can check: the top cause's first evidence, the error, or the first failing check."""
    cause = top_cause(report)
    if cause and cause.get('evidence'):
        return one_line(cause['evidence'][0])
    if report.get('error'):
        return one_line(report['error']['message'])
    for layer in report.get('layers') or []:
        for check in layer.get('checks') or []:
            if check.get('status') == 'fail':
                return one_line('%s: %s' % (check.get('name'), check.get('detail', '')))
    return ''


def verdict_label(report):
    """`down`, `down (not deployed)`, `down (psutil missing)`, `unreachable`, `unreachable (timeout)`...;
    `(earlier audit)` marks a host a rerun did not audit (its report is carried from the audit before)."""
    error = report.get('error') or {}
    label = report['verdict']
    if error.get('kind') and error['kind'] != report['verdict']:
        label = '%s (%s)' % (label, error['kind'].replace('_', ' '))
    if report.get('carried_from'):
        label += ' (earlier audit)'
    return label


def cause_label(report):
    cause = top_cause(report)
    if cause:
        return cause['id']
    error = report.get('error') or {}
    return error.get('kind', '')


def _layer_index(name):
    return LAYERS.index(name) if name in LAYERS else len(LAYERS)


def _verdict_index(verdict):
    return VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS)


def worst_first(reports):
    """Down, unreachable, degraded, healthy; within a verdict the lowest failing rung first; there, hosts grouped
    by their top cause (or why there is no diagnosis), the cause that hits the most hosts first, then by host."""
    hit = dict()
    for report in reports:
        hit[cause_label(report)] = hit.get(cause_label(report), 0) + 1
    return sorted(reports, key=lambda r: (_verdict_index(r['verdict']), _layer_index(r.get('failed_layer')),
                                          -hit[cause_label(r)], cause_label(r), str(r['host'])))


def row(report):
    """A line of the fleet table, as data."""
    cause = top_cause(report)
    return {
        'host': report['host'],
        'verdict': report['verdict'],
        'label': verdict_label(report),
        'failed_layer': report.get('failed_layer'),
        'top_cause': cause['id'] if cause else None,
        'error': (report.get('error') or {}).get('kind'),
        'evidence': evidence_line(report),
    }


# --- the fleet --------------------------------------------------------------------------------------------
def summarize(reports):
    """Counts by verdict, by failed layer and by cause (hosts hit, ranked), and the hosts to look at."""
    by_verdict = dict((v, 0) for v in VERDICTS)
    by_layer = dict()
    causes = dict()
    not_diagnosed = dict()
    for report in sorted(reports, key=lambda r: str(r['host'])):
        host = report['host']
        by_verdict[report['verdict']] = by_verdict.get(report['verdict'], 0) + 1
        if report.get('failed_layer'):
            by_layer[report['failed_layer']] = by_layer.get(report['failed_layer'], 0) + 1
        if report.get('error'):
            not_diagnosed[host] = report['error']['kind']
        for cause in report.get('causes') or []:
            entry = causes.setdefault(cause['id'], {
                'id': cause['id'],
                'layer': cause['layer'],
                'severity': cause['severity'],
                'hosts': [],
            })
            if host not in entry['hosts']:
                entry['hosts'].append(host)
            if cause['severity'] == 'fail':
                entry['severity'] = 'fail'
    ranked = sorted(causes.values(),
                    key=lambda e: (-len(e['hosts']), SEVERITY_RANK.get(e['severity'], 2), _layer_index(e['layer']), e['id']))
    return {
        'hosts': len(reports),
        'by_verdict': by_verdict,
        'by_failed_layer': dict((layer, by_layer[layer]) for layer in sorted(by_layer, key=_layer_index)),
        'by_cause': dict((e['id'], len(e['hosts'])) for e in ranked),
        'causes': ranked,
        'down': sorted(r['host'] for r in reports if r['verdict'] == 'down'),
        'unreachable': sorted(r['host'] for r in reports if r['verdict'] == 'unreachable'),
        'not_diagnosed': not_diagnosed,
        'by_error_kind': _count_by_kind(not_diagnosed),
    }


def _count_by_kind(not_diagnosed):
    """error kind -> hosts without a diagnosis for that reason, the most hosts first."""
    counts = dict()
    for kind in not_diagnosed.values():
        counts[kind] = counts.get(kind, 0) + 1
    return dict((kind, counts[kind]) for kind in sorted(counts, key=lambda k: (-counts[k], k)))


def hosts_by_error_kind(summary):
    """error kind -> its hosts, in the order of summary['by_error_kind'] (the most hosts first)."""
    groups = dict((kind, []) for kind in summary.get('by_error_kind') or {})
    for host, kind in sorted(summary['not_diagnosed'].items()):
        groups.setdefault(kind, []).append(host)
    return groups


HEALTHY_ROWS = 10     # more healthy hosts than this: one row (count and names) instead of a row each


def table_parts(audit):
    """The fleet table as shown: the hosts with a problem, worst first, and the healthy ones - their rows when
    there are few, else None and their names (at 100 hosts the problems stay on the first screen)."""
    problems = [e for e in audit['table'] if e['verdict'] != 'healthy']
    healthy = [e for e in audit['table'] if e['verdict'] == 'healthy']
    if len(healthy) <= HEALTHY_ROWS:
        return problems + healthy, None
    return problems, [e['host'] for e in healthy]


def _state(report):
    return {'verdict': report.get('verdict'), 'failed_layer': report.get('failed_layer'),
            'causes': sorted(set(c['id'] for c in report.get('causes') or []))}


def previous_reports(previous_audit):
    """host -> report from a previous audit.json (its `reports`, a mapping or a list)."""
    reports = (previous_audit or {}).get('reports') or {}
    if isinstance(reports, dict):
        return dict((str(h), r) for h, r in reports.items() if isinstance(r, dict))
    return dict((str(r.get('host')), r) for r in reports if isinstance(r, dict))


def drift(previous_audit, reports):
    """What changed since `previous_audit` (the last audit.json), or None without one.

    new:     hosts with a problem now (not healthy) that were healthy, or not audited, before;
    fixed:   hosts with a problem before that are healthy now;
    changed: hosts with a problem both times whose verdict, failed layer or causes differ;
    added / removed: hosts audited now but not before, and the other way round.
    """
    if previous_audit is None:
        return None
    before_all = previous_reports(previous_audit)
    found = {'previous_generated_at': previous_audit.get('generated_at'),
             'new': [], 'fixed': [], 'changed': [], 'added': [], 'removed': []}
    now_hosts = set()
    for report in sorted(reports, key=lambda r: str(r['host'])):
        host = str(report['host'])
        now_hosts.add(host)
        after = _state(report)
        before = _state(before_all[host]) if host in before_all else None
        entry = {'host': host, 'before': before, 'after': after,
                 'causes_added': [c for c in after['causes'] if not before or c not in before['causes']],
                 'causes_removed': [c for c in before['causes'] if c not in after['causes']] if before else []}
        bad_now = after['verdict'] != 'healthy'
        if before is None:
            found['added'].append(host)
            if bad_now:
                found['new'].append(entry)
            continue
        bad_before = before['verdict'] != 'healthy'
        if bad_now and not bad_before:
            found['new'].append(entry)
        elif bad_before and not bad_now:
            found['fixed'].append(entry)
        elif bad_now and before != after:
            found['changed'].append(entry)
    found['removed'] = sorted(h for h in before_all if h not in now_hosts)
    return found


def carried_reports(previous_audit, reports, fleet_hosts):
    """A rerun limited to some hosts (--limit @audit.retry) still reports the whole fleet: the previous
    audit's reports of the `fleet_hosts` this run did not audit, each marked `carried_from` (when that
    audit ran; a report carried twice keeps its first date). Hosts not in the previous audit stay out."""
    audited = set(str(r['host']) for r in reports)
    before = previous_reports(previous_audit)
    carried = []
    for host in fleet_hosts or []:
        if host not in audited and host in before:
            report = dict(before[host])
            report.setdefault('carried_from', previous_audit.get('generated_at') or 'an earlier audit')
            carried.append(report)
    return carried


def rerun_command(inventory_sources, playbook, retry_path):
    """The command that audits only the hosts in `retry_path` again (Ansible's `--limit @FILE`)."""
    words = ['ansible-playbook']
    for source in inventory_sources or []:
        words += ['-i', source]
    return ' '.join(shlex.quote(str(w)) for w in words + [playbook, '--limit', '@%s' % retry_path])


def build_audit(reports, previous_audit=None, generated_at=None, report_dir=None):
    """audit.json: the summary, drift, the fleet table worst first and every host's report (by host)."""
    ordered = worst_first(reports)
    return {
        'generated_at': generated_at,
        'report_dir': report_dir,
        'summary': summarize(reports),
        'drift': drift(previous_audit, reports),
        'table': [row(r) for r in ordered],
        'reports': dict((r['host'], r) for r in sorted(reports, key=lambda r: str(r['host']))),
    }


def headline(audit):
    summary = audit['summary']
    counts = ', '.join('%d %s' % (n, v) for v, n in summary['by_verdict'].items())
    return '%d host%s: %s' % (summary['hosts'], '' if summary['hosts'] == 1 else 's', counts)


def _state_text(state):
    if not state:
        return 'not audited'
    text = state['verdict']
    if state.get('failed_layer'):
        text += ' at %s' % state['failed_layer']
    if state.get('causes'):
        text += ' (%s)' % ', '.join(state['causes'])
    return text


def drift_lines(audit):
    """Plain sentences for the drift section (shared by the Markdown, the console and the page)."""
    found = audit.get('drift')
    if found is None:
        return ['No previous audit.json to compare with: this audit is the baseline for the next one.']
    lines = []
    for kind in ('new', 'fixed', 'changed'):
        if not found[kind]:
            lines.append('%s: none' % kind)
        for entry in found[kind]:
            lines.append('%s: %s - %s -> %s' % (
                kind, entry['host'], _state_text(entry['before']), _state_text(entry['after'])))
    if found['added']:
        lines.append('hosts added: %s' % ', '.join(found['added']))
    if found['removed']:
        lines.append('hosts removed: %s' % ', '.join(found['removed']))
    return lines


def drift_summary(audit):
    """The drift in one line: `new: web6; fixed: web3; changed: none`."""
    found = audit.get('drift')
    if found is None:
        return 'no previous audit.json (this one is the baseline)'
    return '; '.join('%s: %s' % (kind, ', '.join(e['host'] for e in found[kind]) or 'none')
                     for kind in ('new', 'fixed', 'changed'))


CONSOLE_HOSTS = 50
HOST_WIDTH = 40       # console only: a longer host name is cut there (audit.md/html keep it whole)


def _columns(entries):
    """The console table's rows as cells, and each column's width: the widest cell it holds (so a long label such
    as `UNREACHABLE (CONNECTION LOST) (EARLIER AUDIT)` widens its column instead of pushing the row out of line)."""
    rows = [(one_line(e['host'], HOST_WIDTH), e['label'].upper(), e['failed_layer'] or '-',
             e['top_cause'] or e['error'] or '-', one_line(e['evidence'], 110)) for e in entries]
    widths = [max([minimum] + [len(r[i]) for r in rows]) for i, minimum in enumerate((8, 7, 5, 9))]
    return rows, widths


def console_lines(audit, paths=None, limit=CONSOLE_HOSTS, rerun=None):
    """What the play prints once: the headline, one line per host worst first (at most `limit`; a fleet
    of thousands is read in audit.md/html), the drift, the files and `rerun`, the command that audits
    only the failed hosts again."""
    lines = ['fleet: %s' % headline(audit)] + carried_lines(audit)
    shown, healthy = table_parts(audit)
    rows, widths = _columns(shown[:limit])
    for cells in rows:
        lines.append(('  ' + '  '.join('%%-%ds' % w for w in widths) + '  %s') % cells)
    if len(shown) > limit:
        lines.append('  ... %d more host(s), the worst are above: see audit.md' % (len(shown) - limit))
    if healthy:
        lines.append('  %d healthy: %s' % (len(healthy), one_line(', '.join(healthy), 150)))
    lines.append('  since the previous audit: %s' % drift_summary(audit))
    for path in paths or []:
        lines.append('  %s' % path)
    if rerun:
        failing = len(audit['summary']['down']) + len(audit['summary']['unreachable'])
        lines.append('  rerun only the %d failed host(s) (with the same -e options, if any): %s' % (failing, rerun))
    return lines


def progress_line(done, seconds, host, report=None, unreachable=None, failed=None):
    """The audit_progress callback's line for one host whose diagnosis finished: how many are done, the seconds
    since the play started, the host, its verdict and, for a problem, the failing layer and top cause, or why
    there is no diagnosis (the fleet report, written once at the end, has the final word)."""
    if report is not None:
        verdict = verdict_label(report).upper()
        why = ' '.join(x for x in (report.get('failed_layer') or '', cause_label(report)) if x)
    elif unreachable is not None:
        verdict, why = 'UNREACHABLE', unreachable
    else:
        verdict, why = 'NOT DIAGNOSED', failed
    why = re.sub(r'^(?:Task failed: )?(?:Module failed: )?', '', str(why or ''))
    line = '[%4d done %6.1f s] %-16s %-13s %s' % (done, seconds, one_line(host, HOST_WIDTH), verdict, one_line(why, 110))
    return line.rstrip()


def carried_lines(audit):
    """The hosts a limited rerun did not audit, in one line (their reports come from an earlier audit)."""
    carried = sorted(set(r['carried_from'] for r in audit['reports'].values() if r.get('carried_from')))
    if not carried:
        return []
    count = sum(1 for r in audit['reports'].values() if r.get('carried_from'))
    return ['  %d host(s) not in this run, as the audit of %s found them' % (count, ', '.join(carried))]


# --- Markdown -----------------------------------------------------------------------------------------------
def md_cell(text):
    """Table-safe and inert: no pipes, no new lines, no raw HTML for renderers that pass HTML through, no
    link or image (a remote image in a report beacons when it is viewed). For every host value in Markdown."""
    text = one_line(text, 10000).replace('&', '&amp;').replace('<', '&lt;')   # no tag can open
    return text.replace('|', '\\|').replace('`', "'").replace('](', ']\\(')


def markdown(audit):
    out = ['# Fleet audit: %s' % headline(audit), '']
    out.append('Generated %s. Hosts worst first; each host\'s full report is `HOST.json` and `HOST.md` beside '
               'this file.' % (audit.get('generated_at') or 'now'))
    out += ['', '| host | verdict | failed layer | top cause | evidence |', '|---|---|---|---|---|']
    shown, healthy = table_parts(audit)
    for entry in shown:
        out.append('| %s | %s | %s | %s | %s |' % (
            md_cell(entry['host']), md_cell(entry['label'].upper()), md_cell(entry['failed_layer'] or '-'),
            md_cell(entry['top_cause'] or entry['error'] or '-'), md_cell(entry['evidence'] or '-')))
    if healthy:
        out.append('| %d hosts | HEALTHY | - | - | %s |' % (len(healthy), md_cell(', '.join(healthy))))
    summary = audit['summary']
    out += ['', '## Causes by hosts hit', '']
    if summary['causes']:
        out += ['| cause | layer | severity | hosts | which |', '|---|---|---|---|---|']
        for entry in summary['causes']:
            out.append('| `%s` | %s | %s | %d | %s |' % (
                entry['id'], entry['layer'], entry['severity'], len(entry['hosts']), md_cell(', '.join(entry['hosts']))))
    else:
        out.append('No cause found on any host.')
    if summary['by_failed_layer']:
        out += ['', '## First failing layer', '', '| layer | hosts |', '|---|---|']
        out += ['| %s | %d |' % (layer, n) for layer, n in summary['by_failed_layer'].items()]
    if summary['not_diagnosed']:
        out += ['', '## Not diagnosed, by what happened', '', '| what happened | hosts | which |', '|---|---|---|']
        out += ['| %s | %d | %s |' % (md_cell(kind), len(hosts), md_cell(', '.join(hosts)))
                for kind, hosts in hosts_by_error_kind(summary).items()]
    out += ['', '## Since the previous audit', '']
    previous = (audit.get('drift') or {}).get('previous_generated_at')
    if previous:
        out += ['Compared with the audit of %s.' % previous, '']
    out += ['- %s' % md_cell(line) for line in drift_lines(audit)]
    return '\n'.join(out) + '\n'


# --- JUnit XML -----------------------------------------------------------------------------------------------
def _xml_text(text):
    return _XML_INVALID.sub(u'\ufffd', u'%s' % (text if text is not None else ''))


def _layer_time(report, layer):
    """Seconds spent on a layer inside the probe (timings are per probe; boot has three)."""
    timings = report.get('timings') or {}
    keys = {'boot': ('dry_import', 'static_scan', 'preload_boot')}.get(layer, (layer,))
    total = 0.0
    for key in keys:
        try:
            total += float(timings.get(key) or 0)
        except (TypeError, ValueError):
            pass
    return total


def _check_lines(layer):
    return ['%s: %s%s' % (c.get('name'), c.get('status'), (' - ' + c['detail']) if c.get('detail') else '')
            for c in layer.get('checks') or []]


def _cause_text(cause):
    lines = ['%s [%s/%s]' % (cause['id'], cause['layer'], cause['severity'])]
    lines += ['  evidence: %s' % e for e in cause.get('evidence') or []]
    lines.append('  remedy: %s' % cause.get('remedy', ''))
    return '\n'.join(lines)


def _sub(parent, tag, attrs=None, text=None):
    element = ET.SubElement(parent, tag, dict((k, _xml_text(v)) for k, v in (attrs or {}).items()))
    if text is not None:
        element.text = _xml_text(text)
    return element


def junit_xml(audit):
    """JUnit XML: a test suite per host, a test case per layer; a fail layer is a failure (its causes
    in the text), a skipped layer is skipped, an unreachable or unprobed host is one error."""
    suites = ET.Element('testsuites', {'name': 'sre.gunicorn_doctor audit'})
    totals = dict(tests=0, failures=0, errors=0, skipped=0)
    total_time = 0.0
    for host, report in audit['reports'].items():
        suite = _sub(suites, 'testsuite', {'name': host, 'hostname': host,
                                           'timestamp': (audit.get('generated_at') or '').rstrip('Z')})
        props = _sub(suite, 'properties')
        for name, value in (('verdict', report['verdict']), ('failed_layer', report.get('failed_layer') or ''),
                            ('top_cause', cause_label(report))):
            _sub(props, 'property', {'name': name, 'value': value})
        counts = dict(tests=0, failures=0, errors=0, skipped=0)
        classname = 'gunicorn_doctor.%s' % host
        layers = list(report.get('layers') or [])
        error = report.get('error')
        if error:
            check = layers[0]['checks'][0] if layers and layers[0].get('checks') else {'name': error['kind']}
            case = _sub(suite, 'testcase', {'classname': classname, 'name': check['name'], 'time': '0'})
            _sub(case, 'error', {'type': error['kind'], 'message': one_line(error['message'], 500)}, error['message'])
            counts['tests'] += 1
            counts['errors'] += 1
            layers = layers[1:]
        for layer in layers:
            seconds = _layer_time(report, layer['name'])
            case = _sub(suite, 'testcase', {'classname': classname, 'name': layer['name'], 'time': '%.3f' % seconds})
            counts['tests'] += 1
            causes = [c for c in report.get('causes') or [] if c['layer'] == layer['name']]
            if layer['status'] == 'fail':
                counts['failures'] += 1
                failing = [c for c in causes if c['severity'] == 'fail'] or causes
                if failing:
                    # One <failure> per test case (what JUnit readers accept): the first cause names it,
                    # its text lists them all.
                    _sub(case, 'failure', {'type': failing[0]['id'], 'message': '%s: %s' % (
                        failing[0]['id'], one_line((failing[0].get('evidence') or [''])[0], 500))},
                        '\n'.join(_cause_text(c) for c in failing))
                else:
                    lines = [line for line, c in zip(_check_lines(layer), layer['checks']) if c.get('status') == 'fail']
                    _sub(case, 'failure', {'type': 'check', 'message': one_line(lines[0] if lines else 'failed', 500)},
                         '\n'.join(lines))
            elif layer['status'] == 'skip':
                counts['skipped'] += 1
                detail = next((c.get('detail') for c in layer.get('checks') or [] if c.get('detail')), 'not probed')
                _sub(case, 'skipped', {'message': one_line(detail, 500)})
            out = _check_lines(layer) + [_cause_text(c) for c in causes if layer['status'] != 'fail' or c['severity'] == 'warn']
            if out and layer['status'] != 'skip':
                _sub(case, 'system-out', None, '\n'.join(out))
        suite_time = float((report.get('timings') or {}).get('total') or 0)
        total_time += suite_time
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set('time', '%.3f' % suite_time)
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set('time', '%.3f' % total_time)
    return u'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding='unicode') + u'\n'


# --- HTML ------------------------------------------------------------------------------------------------------
def esc(text):
    return _html_escape(_xml_text(text), quote=True)


STYLE = u"""
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header,main{max-width:1200px;margin:0 auto;padding:12px 20px}
header{border-bottom:1px solid #d8dde3}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:22px 0 8px}h3{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0}
th,td{border:1px solid #d8dde3;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.ev,td.checks{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-word}
.badge{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff;background:#6b7785}
.v-down .badge,.badge.v-down{background:#c62828}.v-unreachable .badge,.badge.v-unreachable{background:#6a1b9a}
.v-degraded .badge,.badge.v-degraded{background:#ef6c00}.v-healthy .badge,.badge.v-healthy{background:#2e7d32}
.s-fail td.st{color:#c62828;font-weight:700}.s-warn td.st{color:#ef6c00;font-weight:700}
.s-pass td.st{color:#2e7d32}.s-skip td.st{color:#6b7785}
.counts span{margin-right:14px}
article{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:12px 16px;margin:14px 0}
ul{margin:2px 0;padding-left:18px}
.cause{margin:8px 0;padding:6px 10px;border-left:4px solid #c62828;background:#fdf3f3}
.cause.warn{border-color:#ef6c00;background:#fff6ed}
.remedy{margin:4px 0 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
footer{color:#6b7785;font-size:12px;max-width:1200px;margin:20px auto;padding:0 20px}
td.n{text-align:right;font-variant-numeric:tabular-nums;width:4em}
td.names{font-size:12.5px;line-height:1.7}
table.layers{width:auto;min-width:280px}
details>summary{cursor:pointer;list-style-position:outside}details>summary h3{display:inline;margin:0}
tr.nodiag td{background:#f7f3fa}
"""


def _html_ladder(report):
    rows = []
    for layer in report.get('layers') or []:
        checks = ''.join(u'<li><b>%s</b>: %s%s</li>' % (
            esc(c.get('name')), esc(c.get('status')), (u' &mdash; ' + esc(c['detail'])) if c.get('detail') else u'')
            for c in layer.get('checks') or [])
        rows.append(u'<tr class="s-%s"><td>%s</td><td class="st">%s</td><td class="checks"><ul>%s</ul></td></tr>' % (
            esc(layer.get('status')), esc(layer.get('name')), esc(STATUS_MARK.get(layer.get('status'), layer.get('status'))),
            checks))
    return u'<table class="ladder"><tr><th>layer</th><th>status</th><th>checks</th></tr>%s</table>' % u''.join(rows)


def _html_causes(report):
    parts = []
    for cause in report.get('causes') or []:
        evidence = u''.join(u'<li>%s</li>' % esc(e) for e in cause.get('evidence') or [])
        parts.append(u'<div class="cause %s"><code>%s</code> (%s, %s)<ul>%s</ul><p class="remedy"><b>Remedy:</b> %s</p></div>' % (
            esc(cause.get('severity')), esc(cause.get('id')), esc(cause.get('layer')), esc(cause.get('severity')), evidence,
            esc(cause.get('remedy'))))
    return u''.join(parts) or u'<p>No cause found.</p>'


def _html_hosts(audit, anchors):
    """The fleet table: the hosts with a problem worst first, grouped by cause; the healthy ones in one row at scale."""
    out = [u'<section id="fleet"><h2>Hosts, worst first</h2><table><tr><th>host</th><th>verdict</th>'
           u'<th>failed layer</th><th>top cause</th><th>evidence</th></tr>']
    shown, healthy = table_parts(audit)
    for entry in shown:
        out.append(u'<tr class="v-%s"><td><a href="#%s">%s</a></td><td><span class="badge">%s</span></td><td>%s</td>'
                   u'<td><code>%s</code></td><td class="ev">%s</td></tr>' % (
                       esc(entry['verdict']), anchors.get(entry['host'], ''), esc(entry['host']), esc(entry['label'].upper()),
                       esc(entry['failed_layer'] or '-'), esc(entry['top_cause'] or entry['error'] or '-'),
                       esc(entry['evidence'] or '-')))
    if healthy:
        out.append(u'<tr class="v-healthy all-healthy"><td>%d hosts</td><td><span class="badge">HEALTHY</span></td>'
                   u'<td>-</td><td>-</td><td class="names">%s</td></tr>' % (len(healthy), u', '.join(
                       u'<a href="#%s">%s</a>' % (anchors.get(h, ''), esc(h)) for h in healthy)))
    out.append(u'</table></section>')
    return out


def _html_links(hosts, anchors):
    return u', '.join(u'<a href="#%s">%s</a>' % (anchors.get(h, ''), esc(h)) for h in hosts)


def _html_groups(summary, anchors):
    """Counts per cause (and per reason a host has no diagnosis) and per first failing layer."""
    out = [u'<section id="causes"><h2>Causes by hosts hit</h2>']
    groups = hosts_by_error_kind(summary)
    if summary['causes'] or groups:
        out.append(u'<table><tr><th>cause</th><th>layer</th><th>severity</th><th>hosts</th><th>which</th></tr>')
        for entry in summary['causes']:
            out.append(u'<tr><td><code>%s</code></td><td>%s</td><td>%s</td><td class="n">%d</td><td>%s</td></tr>' % (
                esc(entry['id']), esc(entry['layer']), esc(entry['severity']), len(entry['hosts']),
                _html_links(entry['hosts'], anchors)))
        for kind, hosts in groups.items():
            out.append(u'<tr class="nodiag"><td><code>%s</code></td><td>-</td><td>no diagnosis</td><td class="n">%d</td>'
                       u'<td>%s</td></tr>' % (esc(kind), len(hosts), _html_links(hosts, anchors)))
        out.append(u'</table>')
    else:
        out.append(u'<p>No cause found on any host.</p>')
    if summary['by_failed_layer']:
        out.append(u'<h2>First failing layer</h2><table class="layers"><tr><th>layer</th><th>hosts</th></tr>%s</table>'
                   % u''.join(u'<tr><td>%s</td><td class="n">%d</td></tr>' % (esc(layer), n)
                              for layer, n in summary['by_failed_layer'].items()))
    out.append(u'</section>')
    return out


def _html_ladders(audit, anchors):
    """Each host's ladder, worst first; a healthy host's folded (no script: <details>)."""
    out = [u'<section id="hosts"><h2>Each host\'s ladder</h2>']
    for entry in audit['table']:
        report = audit['reports'][entry['host']]
        title = u'%s <span class="badge v-%s">%s</span>' % (esc(entry['host']), esc(entry['verdict']), esc(entry['label'].upper()))
        if report.get('failed_layer'):
            title += u' first failing layer: %s' % esc(report['failed_layer'])
        body = _html_ladder(report) + _html_causes(report)
        if entry['verdict'] == 'healthy':
            out.append(u'<article id="%s"><details><summary><h3>%s</h3></summary>%s</details></article>' % (
                anchors.get(entry['host'], ''), title, body))
        else:
            out.append(u'<article id="%s"><h3>%s</h3>%s</article>' % (anchors.get(entry['host'], ''), title, body))
    out.append(u'</section>')
    return out


def html_page(audit):
    """One static page: no script, no external asset (a CSP forbids both), everything escaped."""
    summary = audit['summary']
    anchors = dict((host, 'host-%d' % i) for i, host in enumerate(audit['reports'], start=1))
    out = [u'<!DOCTYPE html>', u'<html lang="en"><head><meta charset="utf-8">',
           u'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
           u'<meta name="viewport" content="width=device-width, initial-scale=1">',
           u'<title>Fleet audit: %s</title><style>%s</style></head><body>' % (esc(headline(audit)), STYLE),
           u'<header><h1>Fleet audit</h1><p class="counts">%s</p><p>%d hosts, generated %s.</p></header><main>' % (
               u''.join(u'<span><span class="badge v-%s">%d %s</span></span>' % (esc(v), n, esc(v))
                        for v, n in summary['by_verdict'].items()),
               summary['hosts'], esc(audit.get('generated_at') or 'now'))]
    # The counts first: at 100 hosts they are the one-screen answer; the hosts, worst first, follow.
    out += _html_groups(summary, anchors) + _html_hosts(audit, anchors)
    out.append(u'<section id="drift"><h2>Since the previous audit</h2><ul>%s</ul></section>' % u''.join(
        u'<li>%s</li>' % esc(line) for line in drift_lines(audit)))
    out += _html_ladders(audit, anchors)
    out.append(u'</main><footer>sre.gunicorn_doctor audit.yml: the runbook\'s ladder on every host '
               u'(port, process, listen, healthz, boot, system, eventlet, voice, external).</footer></body></html>')
    return u'\n'.join(out) + u'\n'
