# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a service's environment lives: env files, /proc/<pid>/environ, systemd units,
supervisord programs, /proc/<pid>/limits. Text in, data out; no Ansible import."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import glob
import os
import re
import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import is_within

ENVIRON_MAX = 4 << 20  # /proc/<pid>/environ: argv and environ share a quarter of the stack limit (2 MiB by default)
# Variable names whose values never leave the host (evidence shows only that they are set).
# What a backslash escapes inside double quotes, in sh and in systemd's env files alike.
SHELL_ESCAPED = '"\\$`'
SECRET_NAME = re.compile(r'(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY|AUTH)', re.I)


def parse_dotenv(text):
    """`KEY=value` lines (optional `export`, quotes, comments) -> dict. Inside double quotes a backslash
    escapes `"`, `\\`, `$` and a backquote, as both sh and systemd's EnvironmentFile= read it."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('export '):
            line = line[7:].lstrip()
        if '=' not in line:
            continue
        key, value = line.split('=', 1)
        key = key.strip()
        value = value.strip()
        if value[:1] == '"':
            value = _double_quoted(value)
        elif value[:1] == "'" and value.find("'", 1) > 0:
            value = value[1:value.find("'", 1)]  # what follows the closing quote is a comment
        elif ' #' in value:
            value = value.split(' #', 1)[0].rstrip()
        env[key] = value
    return env


def _double_quoted(value):
    out, i = [], 1
    while i < len(value):
        c = value[i]
        if c == '\\' and i + 1 < len(value) and value[i + 1] in SHELL_ESCAPED:
            out.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return ''.join(out)
        out.append(c)
        i += 1
    return value  # no closing quote: taken as written


def parse_environ(raw):
    """The NUL-separated bytes of /proc/<pid>/environ -> dict."""
    env = {}
    for item in raw.split(b'\0'):
        if b'=' in item:
            key, value = item.split(b'=', 1)
            env[key.decode('utf-8', 'replace')] = value.decode('utf-8', 'replace')
    return env


def read_proc_environ(pid):
    """The environment a running process started with, or None when it cannot be read."""
    raw = safe_read.read_bytes('/proc/%d/environ' % pid, ENVIRON_MAX).data
    return parse_environ(raw) if raw is not None else None


def parse_systemd_environment(unit_text, problems=None):
    """`Environment=` lines of a unit -> dict; `EnvironmentFile=` paths -> list. Continued lines are joined;
    a line that cannot be split (an open quote) is skipped and, when `problems` is a list, described there."""
    env, files = {}, []
    for line in _systemd_lines(unit_text):
        m = re.match(r'^(Environment|EnvironmentFile)\s*=\s*(.*)$', line)
        if not m:
            continue
        if m.group(1) == 'EnvironmentFile':
            files.append(m.group(2).lstrip('-'))
            continue
        try:
            items = shlex.split(m.group(2))
        except ValueError as e:
            if problems is not None:
                problems.append('cannot read "%s": %s' % (line[:60], e))
            continue
        for item in items:
            if '=' in item:
                key, value = item.split('=', 1)
                env[key] = value
    return env, files


def _systemd_lines(unit_text):
    """Unit lines, stripped, with backslash-continued lines joined (systemd joins them with a space)."""
    lines, pending = [], ''
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        lines.append(pending + line)
        pending = ''
    if pending:
        lines.append(pending.rstrip())
    return lines


def parse_supervisord_programs(conf_text):
    """supervisord ini text -> {program name: {'command': str, 'directory': str, 'environment': dict}}."""
    programs, current = {}, None
    for raw in _join_continuations(conf_text):
        line = raw.strip()
        if not line or line[0] in ';#':
            continue
        header = re.match(r'^\[program:([^\]]+)\]$', line)
        if header:
            current = programs.setdefault(header.group(1), {'command': '', 'directory': '', 'environment': {}, 'user': ''})
            continue
        if line.startswith('['):
            current = None
            continue
        if current is None or '=' not in line:
            continue
        key, value = [p.strip() for p in line.split('=', 1)]
        if key == 'environment':
            current['environment'] = _parse_supervisord_env(value)
        elif key in ('command', 'directory', 'user') + RESTART_KEYS:
            current[key] = value
    return programs


# A supervisord program's restart settings (kept only when the program sets them) and supervisord's defaults.
RESTART_KEYS = ('autorestart', 'startsecs', 'startretries')
RESTART_DEFAULTS = {'autorestart': 'unexpected', 'startsecs': '1', 'startretries': '3'}


def systemd_settings(unit_text, names):
    """The values a unit (with its drop-ins appended) gives `names`, e.g. ('Restart', 'WatchdogSec') -> {name:
    value}; the last assignment wins and an empty one resets it, as systemd reads them."""
    values = {}
    for line in _systemd_lines(unit_text or ''):
        key, sep, value = line.partition('=')
        if sep and key.strip() in names:
            values[key.strip()] = value.strip()
    return dict((k, v) for k, v in values.items() if v)


def systemd_values(unit_text, name):
    """Every value a unit gives `name` (ExecStart=, ExecStartPre=, ...), in order; an empty one resets the list."""
    values = []
    for line in _systemd_lines(unit_text or ''):
        key, sep, value = line.partition('=')
        if sep and key.strip() == name:
            values = values + [value.strip()] if value.strip() else []
    return values


def _join_continuations(conf_text):
    """ini lines with their indented continuation lines folded in (supervisord allows them)."""
    lines = []
    for raw in conf_text.splitlines():
        if raw[:1] in (' ', '\t') and raw.strip() and lines and not lines[-1].lstrip().startswith(('[', ';', '#')):
            lines[-1] += ' ' + raw.strip()
        else:
            lines.append(raw)
    return lines


def _parse_supervisord_env(value):
    # KEY="val",KEY2=val2 : a comma-separated list, values optionally quoted.
    env = {}
    for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^,]*)', value):
        val = m.group(2)
        if len(val) >= 2 and val[0] == val[-1] and val[0] in '"\'':
            val = val[1:-1]
        env[m.group(1)] = val
    return env


def runner_file_environment(manager, text, name):
    """What a service's runner file gives it: (environment dict, env file paths, problems). The file is a
    systemd unit, a supervisord program file (program `name`) or the standalone runner's env file. The values
    are as the service sees them; a value only its manager could expand (a supervisord `%(ENV_X)s`, a systemd
    specifier such as `%h`) is a problem, not a value."""
    problems = []
    if not text:
        return {}, [], problems
    if manager == 'systemd':
        env, files = parse_systemd_environment(text, problems)
        env = _unescape_percent(env, r'%[^%]', 'a systemd specifier', problems)
        return env, files, problems
    if manager == 'supervisord':
        program = parse_supervisord_programs(text).get(name)
        env = _unescape_percent(program['environment'] if program else {}, r'%\(', "supervisord's %(...)s expansion",
                                problems)
        return env, [], problems
    return parse_dotenv(text), [], problems


def runner_file_user(manager, text, name):
    """The user and group a runner file starts the service as -> (user, group), None where it sets none: a
    systemd unit's User=/Group= (and DynamicUser=yes as the user "dynamic"), a supervisord program's user=
    (supervisord gives it the user's primary group), the standalone start script's setpriv --reuid/--regid."""
    if not text:
        return None, None
    if manager == 'systemd':
        values = {}
        for line in _systemd_lines(text):
            m = re.match(r'^(User|Group|DynamicUser)\s*=\s*(.*)$', line)
            if m:
                values[m.group(1)] = m.group(2).strip()  # the last assignment wins; an empty one resets
        if not values.get('User') and values.get('DynamicUser', '').lower() in ('yes', 'true', '1', 'on'):
            return 'dynamic', None
        return values.get('User') or None, values.get('Group') or None
    if manager == 'supervisord':
        program = parse_supervisord_programs(text).get(name) or {}
        return program.get('user') or None, None
    m = re.search(r'\bsetpriv\s+--reuid=(\S+)\s+--regid=(\S+)', text)
    return (m.group(1), m.group(2)) if m else (None, None)


def runner_file_command(manager, text, name, env=None):
    """The command a runner file starts the service with -> {'argv': [...], 'directory': DIR or None}, or None:
    a systemd unit's last ExecStart= (its `-@:+!` prefixes dropped, $VAR and ${VAR} expanded from `env` as
    systemd does) and WorkingDirectory=, or a supervisord program's command= and directory=."""
    if not text:
        return None
    if manager == 'systemd':
        command, directory = None, None
        for line in _systemd_lines(text):
            m = re.match(r'^(ExecStart|WorkingDirectory)\s*=\s*(.*)$', line)
            if m and m.group(1) == 'ExecStart':
                command = m.group(2).strip().lstrip('-@:+!') or None   # an empty ExecStart= resets
            elif m:
                directory = m.group(2).strip().lstrip('-') or None
        if not command:
            return None
        command = re.sub(r'\$\{(\w+)\}|\$(\w+)', lambda v: (env or {}).get(v.group(1) or v.group(2), ''), command)
    elif manager == 'supervisord':
        program = parse_supervisord_programs(text).get(name) or {}
        command, directory = program.get('command'), program.get('directory') or None
        if not command:
            return None
    else:
        return None
    try:
        return {'argv': shlex.split(command), 'directory': directory}
    except ValueError:
        return None


def _unescape_percent(env, manager_only, what, problems):
    kept = {}
    for key, value in env.items():
        if re.search(manager_only, value.replace('%%', '')):
            problems.append('%s uses %s, which only the service manager can expand' % (key, what))
            continue
        kept[key] = value.replace('%%', '%')
    return kept


def format_env_file(env):
    """dict -> an env file that `sh` (`set -a; . FILE`) and systemd's EnvironmentFile= read the same way:
    double-quoted values, with `"`, `\\`, `$` and backquotes escaped. Raises ValueError naming a variable it
    cannot hold (a line break in its value)."""
    return ''.join(env_line(key, env[key], quote_always=True) + '\n' for key in sorted(env))


# A value made of these needs no quotes in sh or in systemd's EnvironmentFile=.
PLAIN_VALUE = re.compile(r'^[A-Za-z0-9_./:@+,=-]*$')


def env_line(key, value, quote_always=False):
    """One `KEY=value` line both sh and systemd read as `value`: double-quoted with `"`, `\\`, `$` and
    backquotes escaped (only when needed, unless `quote_always`). Raises ValueError naming a variable it cannot
    hold (an invalid name, a line break in its value)."""
    if not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', key):
        raise ValueError('%s is not a valid environment variable name' % key)
    if '\0' in value or len((value + 'x').splitlines()) > 1:
        raise ValueError('the value of %s holds a line break, which an env file cannot carry' % key)
    if PLAIN_VALUE.match(value) and not quote_always:
        return '%s=%s' % (key, value)
    return '%s="%s"' % (key, ''.join('\\' + c if c in SHELL_ESCAPED else c for c in value))


ASSIGNMENT = re.compile(r'^\s*(export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=')


def set_env_values(text, values, only_if=None):
    """Set variables in an env file's text, every other line kept as it is: each line that sets a variable of
    `values` to another value gets the new one (an `export` prefix kept); a variable no line sets is appended -
    except those of `only_if`, which change only where they hold the given value now.
    -> (new text, {name: 'changed' | 'added'}). Raises ValueError for a value no env file can hold."""
    only_if = only_if or {}
    out, seen, changes = [], set(), {}
    for line in text.splitlines(True):
        m = ASSIGNMENT.match(line)
        name = m.group(2) if m else None
        if name in values:
            seen.add(name)
            current = parse_dotenv(line).get(name)
            if current != values[name] and only_if.get(name, current) == current:
                line = (m.group(1) or '') + env_line(name, values[name]) + '\n'
                changes[name] = 'changed'
        out.append(line)
    for name in values:
        if name not in seen and name not in only_if:
            if out and not out[-1].endswith('\n'):
                out[-1] += '\n'
            out.append(env_line(name, values[name]) + '\n')
            changes[name] = 'added'
    return ''.join(out), changes


def read_text(path, limit=1 << 20, follow=True):
    """The head of a small text file (a unit, a supervisord config, an env file, a /proc file), or None when it is
    missing, unreadable or not a regular file. Symlinks are followed by default: enabled units and shared env
    files are often links; `follow=False` for files this collection writes itself."""
    return safe_read.read_text(path, limit, follow=follow).data


def _other_directory(directory, chdir):
    """A runner configured for another checkout of the same app spec is another app."""
    return bool(chdir and directory) and not is_within(directory, chdir)


# {(unit directory, app): [(path, text)]} while units_read_once() holds, else None (every call reads the files).
_UNITS_NAMING = None


@contextlib.contextmanager
def units_read_once():
    """Within it each unit directory is read once for an app: a probe run's port, runner, restart and eventlet probes
    each look for the app's units, and a host holds hundreds of unit files. Outside, every call reads them again
    (stabilize writes units between its reads)."""
    global _UNITS_NAMING
    _UNITS_NAMING = {}
    try:
        yield
    finally:
        _UNITS_NAMING = None


def _units_naming(app, unit_dir):
    """(path, text) of the *.service files in `unit_dir` whose text names `app`."""
    cache = _UNITS_NAMING
    if cache is not None and (unit_dir, app) in cache:
        return cache[(unit_dir, app)]
    found = []
    for path in sorted(glob.glob(os.path.join(unit_dir, '*.service'))):
        text = read_text(path)
        if text and app in text:
            found.append((path, text))
    if cache is not None:
        cache[(unit_dir, app)] = found
    return found


def find_unit_environments(app, unit_dirs=('/etc/systemd/system', '/run/systemd/system', '/lib/systemd/system'),
                           chdir=None):
    """systemd units whose ExecStart runs `app` (in `chdir`, when given) -> [(unit path, env dict)]
    (EnvironmentFile= merged)."""
    found = []
    for unit_dir in unit_dirs:
        for path, text in _units_naming(app, unit_dir):
            workdir = re.search(r'^\s*WorkingDirectory=-?(\S+)', text, re.M)
            if workdir and _other_directory(workdir.group(1), chdir):
                continue
            for dropin in sorted(glob.glob(path + '.d/*.conf')):
                text += '\n' + (read_text(dropin) or '')
            env, files = parse_systemd_environment(text)
            for env_file in files:  # as systemd reads them: each file overrides Environment= and the files before it
                env.update(parse_dotenv(read_text(env_file) or ''))
            found.append((path, env))
    return found


def find_supervisord_environments(app, conf_globs=('/etc/supervisor/conf.d/*.conf', '/etc/supervisord.conf',
                                                   '/etc/supervisor/supervisord.conf', '/etc/supervisord.d/*.ini'),
                                  chdir=None):
    """supervisord programs whose command runs `app` (in `chdir`, when given) -> [('path [program:x]', env)]."""
    found = []
    for pattern in conf_globs:
        for path in sorted(glob.glob(pattern)):
            for name, program in sorted(parse_supervisord_programs(read_text(path) or '').items()):
                if app in program['command'] and not _other_directory(program['directory'], chdir):
                    found.append(('%s [program:%s]' % (path, name), program['environment']))
    return found


def parse_limits(text):
    """/proc/<pid>/limits -> {'Max open files': (soft, hard)}; 'unlimited' -> None."""
    limits = {}
    for line in text.splitlines()[1:]:
        m = re.match(r'^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)', line)
        if m:
            soft, hard = (None if v == 'unlimited' else int(v) for v in m.group(2, 3))
            limits[m.group(1)] = (soft, hard)
    return limits


def redact_env(env):
    """Copy of env with secret-looking values replaced, for evidence."""
    return dict((k, '<redacted>' if SECRET_NAME.search(k) else v) for k, v in env.items())
