# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which eventlet / greenlet / gunicorn versions can run gunicorn's eventlet worker on which Python.

Data first, one place: update a row when upstream ships a release. Every row names where it comes
from (SOURCES). `check_versions(python, versions)` turns a host's versions into problems, each with
the package, the version, the exact error it causes and the pin that fixes it.

The runbook's "eventlet >= 0.33.3" is out of date: gunicorn 24/25 refuse eventlet < 0.40.3 and
gunicorn 26+ has no eventlet worker at all.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

SOURCES = {
    'facts': 'docs/facts.md, "Gunicorn and eventlet: which versions can run together" (reproduced on '
             'Debian 12, Python 3.11)',
    'g20-already-handled': 'eventlet 0.30.3 removed eventlet.wsgi.ALREADY_HANDLED: https://github.com/eventlet/eventlet/issues/702, '
                           'https://github.com/benoitc/gunicorn/issues/2582; fixed in gunicorn 21 by '
                           'https://github.com/benoitc/gunicorn/pull/2581',
    'g20': 'gunicorn 20.1.0 wheel: gunicorn/workers/geventlet.py (version check, '
           '"from eventlet.wsgi import ALREADY_HANDLED")',
    'g23': 'gunicorn 23.0.0 wheel: gunicorn/workers/geventlet.py version check, extra "eventlet !=0.36.0,>=0.24.1", '
           'monkey_patch() in the worker (after a --preload import)',
    'g24': 'gunicorn 24.1.1 and 25.3.0 wheels: gunicorn/workers/geventlet.py (DeprecationWarning, version check, '
           'monkey_patch() at import), extra "eventlet>=0.40.3", Requires-Python >=3.10',
    'g26': 'eventlet worker removed: https://github.com/benoitc/gunicorn/pull/3623',
    'py310': 'https://github.com/eventlet/eventlet/issues/733 (and #687): eventlet <= 0.32.0 fails at import on '
             'Python 3.10+; 0.33.0+ import',
    'py312': 'reproduced: Python 3.12.1, fresh venv, eventlet 0.33.3 fails in eventlet/support/greenlets.py '
             '(import distutils.version); 0.34.1 imports',
    'py313': 'reproduced: Python 3.13.0, eventlet 0.37.0 fails in monkey_patch(); 0.38.0 works (eventlet NEWS 0.38.0: '
             '"Python 3.13 Support (#988)")',
    'py314': 'eventlet NEWS 0.41.0: "Switch to 3.14 for testing (#1086)", "Drop 3.9 support (#1085)"',
    'e036': 'https://github.com/eventlet/eventlet/issues/946 (eventlet 0.36.0 incompatible with flask-socketio running '
            'under gunicorn), fixed in 0.36.1 by https://github.com/eventlet/eventlet/pull/949; gunicorn excludes it: '
            'https://github.com/benoitc/gunicorn/pull/3179',
    'e018': 'eventlet NEWS 0.18.1 / 0.18.0: "IMPORTANT: do not use Eventlet 0.18.0 and 0.18.1"',
    'greenlet': 'greenlet CHANGES.rst: 0.4.16 "Support for Python 3.9", 1.1.0 "Add support for Python 3.10", 1.1.3 '
                '"preliminary support for Python 3.11 leaks memory. Please upgrade to greenlet 2", 3.0.0 (3.12), '
                '3.1.0 "Adds support for Python 3.13", 3.2.2 "build and run on Python 3.14"; '
                'a cp314 manylinux wheel exists for 3.2.4',
    'eventlet-greenlet': 'eventlet 0.41.3 metadata: Requires-Dist greenlet>=1.0',
    'greendns': 'eventlet/green/socket.py (0.33.3 .. 0.41.3): green DNS is off only when EVENTLET_NO_GREENDNS '
                'lower-cased is "yes"',
    'hubs': 'eventlet/hubs/__init__.py use_hub(): a name without "." or ":" imports eventlet.hubs.<name>',
}

# What each gunicorn release line does with the eventlet worker. Versions are [min, max).
GUNICORN_ROWS = (
    {'gunicorn': ('0', '21'), 'worker': True, 'eventlet': ('0.24.1', '0.30.3'),
     'too_new': "ImportError: cannot import name 'ALREADY_HANDLED' from 'eventlet.wsgi'",
     'too_old': 'RuntimeError: eventlet worker requires eventlet 0.24.1 or higher',
     'sources': ('facts', 'g20', 'g20-already-handled')},
    {'gunicorn': ('21', '24'), 'worker': True, 'eventlet': ('0.24.1', None), 'excluded': ('0.36.0',),
     'too_old': 'RuntimeError: eventlet worker requires eventlet 0.24.1 or higher',
     'sources': ('facts', 'g23', 'e036')},
    {'gunicorn': ('24', '26'), 'worker': True, 'eventlet': ('0.40.3', None), 'deprecated': True,
     'too_old': 'RuntimeError: eventlet worker requires eventlet 0.40.3 or higher',
     'notice': '[WARNING] The eventlet worker is DEPRECATED and will be removed in Gunicorn 26.0.',
     'sources': ('facts', 'g24')},
    {'gunicorn': ('26', None), 'worker': False,
     'error': "Error: class uri 'eventlet' invalid or not found: ... ImportError: Entry point "
              "('gunicorn.workers', 'eventlet') not found",
     'sources': ('facts', 'g26')},
)

# The oldest eventlet that imports and patches on a Python (first matching row, newest Python first).
EVENTLET_FOR_PYTHON = (
    {'python': '3.13', 'eventlet': '0.38.0',
     'error': "AttributeError: module 'eventlet.green.thread' has no attribute 'start_joinable_thread'",
     'sources': ('py313',)},
    {'python': '3.12', 'eventlet': '0.34.1',
     'error': "ModuleNotFoundError: No module named 'distutils' (eventlet/support/greenlets.py; unless setuptools "
              "provides a distutils shim)",
     'sources': ('py312',)},
    {'python': '3.10', 'eventlet': '0.33.0',
     'error': "TypeError: cannot set 'is_timeout' attribute of immutable type 'TimeoutError'",
     'sources': ('facts', 'py310')},
)

# The oldest greenlet that supports a Python ('leaky' versions run but leak: a warning).
GREENLET_FOR_PYTHON = (
    {'python': '3.14', 'greenlet': '3.2.2', 'wheel': '3.2.4'},
    {'python': '3.13', 'greenlet': '3.1.0', 'wheel': '3.1.1'},
    {'python': '3.12', 'greenlet': '3.0.0', 'wheel': '3.0.3'},
    {'python': '3.11', 'greenlet': '2.0.0', 'wheel': '3.0.3', 'leaky': ('1.1.3', '2.0.0')},
    {'python': '3.10', 'greenlet': '1.1.0', 'wheel': '3.0.3'},
    {'python': '3.9', 'greenlet': '0.4.16', 'wheel': '3.0.3'},
)
EVENTLET_NEEDS_GREENLET = '1.0'

# Releases known to break, with the upstream issue that documents them.
KNOWN_BAD = (
    {'package': 'eventlet', 'versions': ('0.36.0',),
     'error': "KeyError: 'eventlet.set_idle' when a WebSocket is accepted under a gunicorn worker "
              "(eventlet/websocket.py calls environ['eventlet.set_idle']())",
     'fixed_in': '0.36.1', 'sources': ('e036',)},
    {'package': 'eventlet', 'versions': ('0.18.0', '0.18.1'),
     'error': 'eventlet NEWS: "IMPORTANT: do not use Eventlet 0.18.0 and 0.18.1" (data loss on partial writes)',
     'fixed_in': '0.18.2', 'sources': ('e018',)},
)

# EVENTLET_HUB: the built-in hub modules (eventlet/hubs/<name>.py) and the platforms they run on.
VALID_HUBS = ('selects', 'poll', 'epolls', 'kqueue', 'asyncio')
HUB_PLATFORM = {'epolls': 'epoll', 'kqueue': 'kqueue', 'poll': 'poll'}   # attribute of `select` they need
RECOMMENDED_HUB = 'selects'
GREENDNS_OFF = 'yes'   # the only value eventlet honours (case-insensitive), see SOURCES['greendns']

RECOMMENDED = {'gunicorn': 'gunicorn>=25,<26', 'eventlet': 'eventlet>=0.40.3'}
FALLBACK = ('the long-term fix is -k gthread (or sync, or gevent): eventlet is deprecated and gunicorn 26+ has '
            'no eventlet worker')


def version_tuple(text):
    """'25.3.0' -> (25, 3, 0); '1.1.3.post0' -> (1, 1, 3); None or garbage -> None."""
    if not text:
        return None
    parts = []
    for piece in str(text).strip().split('.'):
        m = re.match(r'^(\d+)', piece)
        if not m:
            break
        parts.append(int(m.group(1)))
        if m.group(1) != piece:
            break
    return tuple(parts) or None


def at_least(version, minimum):
    """version >= minimum (both as text); False when either is unknown."""
    v, m = version_tuple(version), version_tuple(minimum)
    return v is not None and m is not None and v >= m


def _in_range(version, low, high):
    return (low is None or at_least(version, low)) and (high is None or not at_least(version, high))


def _python_row(table, python):
    for row in table:
        if at_least(python, row['python']):
            return row
    return None


def gunicorn_row(gunicorn_version):
    for row in GUNICORN_ROWS:
        if _in_range(gunicorn_version, *row['gunicorn']):
            return row
    return None


def recommended_pins(python):
    """The pins to install today for this Python (its major.minor), as pip requirement strings."""
    pins = [RECOMMENDED['gunicorn'], RECOMMENDED['eventlet']]
    if python and not at_least(python, '3.10'):
        # gunicorn 24+ and eventlet 0.41+ need Python 3.10 (their Requires-Python).
        pins = ['gunicorn==23.0.0', 'eventlet>=0.40.3,<0.41']
    elif at_least(python, '3.14'):
        pins = [RECOMMENDED['gunicorn'], 'eventlet>=0.41.0']
    row = _python_row(GREENLET_FOR_PYTHON, python) or GREENLET_FOR_PYTHON[-1]
    pins.append('greenlet>=%s' % row['wheel'])
    return pins


def pip_command(python_executable, python, pins=None):
    """The exact command that installs the pins into the app's interpreter."""
    pins = pins or recommended_pins(python)
    return '%s -m pip install %s' % (python_executable, ' '.join("'%s'" % p for p in pins))


def _problem(package, version, error, pin, reason, sources, severity='fail'):
    return {'package': package, 'version': version, 'error': error, 'pin': pin, 'reason': reason,
            'severity': severity, 'sources': [SOURCES[s] for s in sources]}


def check_versions(python, versions):
    """(Python version, {distribution: version}) -> problems that stop or break the eventlet worker.

    Each problem: package, version, the exact error it causes, the pin that fixes it, a one-line
    reason, severity and its sources. Pure: no import, no I/O.
    """
    versions = versions or {}
    gunicorn_v, eventlet_v, greenlet_v = (versions.get(k) for k in ('gunicorn', 'eventlet', 'greenlet'))
    problems = []
    eventlet_pin = [p for p in recommended_pins(python) if p.startswith('eventlet')][0]
    gunicorn_pin = [p for p in recommended_pins(python) if p.startswith('gunicorn')][0]
    row = gunicorn_row(gunicorn_v) if gunicorn_v else None
    if row is not None and not row['worker']:
        problems.append(_problem('gunicorn', gunicorn_v, row['error'], gunicorn_pin,
                                 'gunicorn %s has no eventlet worker (removed in 26.0)' % gunicorn_v, row['sources']))
    elif row is not None and eventlet_v is None:
        problems.append(_problem('eventlet', None, row['too_old'], eventlet_pin,
                                 "eventlet is not installed in the app's interpreter", row['sources']))
    elif row is not None:
        low, high = row['eventlet']
        if not at_least(eventlet_v, low):
            problems.append(_problem('eventlet', eventlet_v, row['too_old'], eventlet_pin,
                                     'gunicorn %s needs eventlet >= %s' % (gunicorn_v, low), row['sources']))
        elif high is not None and at_least(eventlet_v, high):
            problems.append(_problem('gunicorn', gunicorn_v, row['too_new'], gunicorn_pin,
                                     'gunicorn %s cannot load eventlet >= %s (%s installed)' % (gunicorn_v, high, eventlet_v),
                                     row['sources']))
        elif eventlet_v in row.get('excluded', ()):
            pass  # reported below with its upstream issue (KNOWN_BAD)
    if eventlet_v:
        py_row = _python_row(EVENTLET_FOR_PYTHON, python)
        if py_row and not at_least(eventlet_v, py_row['eventlet']):
            problems.append(_problem('eventlet', eventlet_v, py_row['error'], eventlet_pin,
                                     'eventlet %s cannot run on Python %s (needs >= %s)' % (
                                         eventlet_v, python, py_row['eventlet']), py_row['sources']))
        for bad in KNOWN_BAD:
            if bad['package'] == 'eventlet' and eventlet_v in bad['versions']:
                problems.append(_problem('eventlet', eventlet_v, bad['error'], eventlet_pin,
                                         'eventlet %s is a known-bad release (fixed in %s)' % (eventlet_v, bad['fixed_in']),
                                         bad['sources']))
        gl_row = _python_row(GREENLET_FOR_PYTHON, python)
        gl_pin = 'greenlet>=%s' % (gl_row['wheel'] if gl_row else '3.0.3')
        if greenlet_v is None:
            problems.append(_problem('greenlet', None, "ModuleNotFoundError: No module named 'greenlet'", gl_pin,
                                     'eventlet needs greenlet, which is not installed', ('eventlet-greenlet',)))
        elif gl_row and not at_least(greenlet_v, gl_row['greenlet']):
            leaky = gl_row.get('leaky')
            if leaky and _in_range(greenlet_v, *leaky):
                problems.append(_problem('greenlet', greenlet_v, 'greenlet %s: preliminary Python %s support that leaks '
                                         'memory' % (greenlet_v, gl_row['python']), gl_pin,
                                         'greenlet %s leaks memory on Python %s' % (greenlet_v, gl_row['python']),
                                         ('greenlet',), severity='warn'))
            else:
                problems.append(_problem('greenlet', greenlet_v, 'greenlet %s predates Python %s support (needs >= %s)'
                                         % (greenlet_v, gl_row['python'], gl_row['greenlet']), gl_pin,
                                         'greenlet %s does not support Python %s' % (greenlet_v, python), ('greenlet',)))
        elif not at_least(greenlet_v, EVENTLET_NEEDS_GREENLET):
            problems.append(_problem('greenlet', greenlet_v, 'eventlet requires greenlet >= %s' % EVENTLET_NEEDS_GREENLET,
                                     gl_pin, 'greenlet %s is older than eventlet needs' % greenlet_v, ('eventlet-greenlet',)))
    return problems


def deprecation_notice(gunicorn_version):
    """gunicorn's own start-up warning for this release line, or None."""
    row = gunicorn_row(gunicorn_version) if gunicorn_version else None
    return row.get('notice') if row else None


def hub_problem(value, available=None, platform_select=None):
    """EVENTLET_HUB value -> None when eventlet can use it, else why not (one line).

    `available`: hub module names found in the installed eventlet (None: not known);
    `platform_select`: the names of the host's `select` module (epoll, kqueue, poll...), None: not known.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return 'EVENTLET_HUB is empty: eventlet raises "RuntimeError: Need to specify a hub"'
    if '.' in value or ':' in value:
        return None  # a custom hub module ("package.module:Class"): not checked
    if value not in VALID_HUBS:
        return "No module named 'eventlet.hubs.%s' (the hubs are %s)" % (value, ', '.join(VALID_HUBS))
    if available is not None and value not in available:
        return "No module named 'eventlet.hubs.%s' in the installed eventlet (it has %s)" % (value, ', '.join(sorted(available)))
    need = HUB_PLATFORM.get(value)
    if need and platform_select is not None and need not in platform_select:
        return 'the %s hub needs select.%s, which this system lacks: "selected hub is not available on this system"' % (
            value, need)
    return None


def greendns_off(value):
    """True when EVENTLET_NO_GREENDNS turns green DNS off (eventlet reads only 'yes')."""
    return value is not None and value.strip().lower() == GREENDNS_OFF
