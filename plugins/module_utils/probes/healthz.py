# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""healthz layer: `curl -m 3 http://127.0.0.1:$PORT/healthz`, sampled over a stability window
when the evidence says the service is young enough to still die. An app bound to a unix socket behind a
front door on $PORT is sampled both ways at each tick: through the front door, and over its socket
(`curl --unix-socket PATH http://localhost/healthz`)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import deadline_http

try:
    from http.client import HTTPException
except ImportError:  # pragma: no cover - Python 2 is not a target
    HTTPException = Exception

POLL_INTERVAL = 0.5
DOWN_RESAMPLE_WINDOW = 2.0  # a refused or failing service is re-sampled briefly to tell down from flapping
TIMEOUT = 3.0               # one GET in all, as `curl -m 3`: connect, headers and body
BODY_MAX = 4096


def sample(port, path, timeout=TIMEOUT, host='127.0.0.1', within=None, unix=None):
    """One GET, all of it within `timeout` s (and before the deadline `within`) -> dict(status, latency_ms, body,
    error). A peer that trickles its answer or sends too much of it is an error, as curl -m would say.
    With `unix` the GET goes over that unix socket (Host: localhost)."""
    started = time.time()
    try:
        answer = deadline_http.request('localhost' if unix else host, port, 'GET', path,
                                       headers={'User-Agent': 'sre.gunicorn_doctor'},
                                       timeout=timeout, body_max=BODY_MAX, within=within, unix=unix)
        status, body, error = answer['status'], answer['body'], None
    except socket.timeout:
        status, body, error = None, b'', 'no answer within %gs' % timeout
    except (IOError, OSError) as e:  # refused, reset, unreachable; out of time, too large
        status, body, error = None, b'', getattr(e, 'strerror', None) or str(e) or e.__class__.__name__
    except HTTPException as e:  # BadStatusLine, more than 100 headers: something answered, not (good) HTTP
        status, body, error = None, b'', '%s: %s' % (e.__class__.__name__, e)
    return {
        'status': status,
        'latency_ms': round((time.time() - started) * 1000, 1),
        'body': body[:200].decode('utf-8', 'replace'),
        'error': error,
    }


def _tick(port, path, timeout, within, backend, started):
    """One sample on $PORT and, with a `backend` socket, one over it -> (the $PORT sample, the backend's or None,
    whether both answered 200)."""
    s = sample(port, path, timeout, within=within)
    s['at'] = round(time.time() - started, 2)
    if backend is None:
        return s, None, s['status'] == 200
    b = sample(None, path, timeout, within=within, unix=backend)
    b['at'] = round(time.time() - started, 2)
    return s, b, s['status'] == 200 and b['status'] == 200


def collect(port, path, wait_seconds, wait_reason, timeout=TIMEOUT, within=None, backend=None):
    """Sample /healthz; keep sampling for `wait_seconds` only when the first answer is 200 and the
    caller has evidence that the service is young, or briefly when the first answer is a failure.
    Sampling ends as soon as a 200 service fails (the flap is proven), or early when the probe's deadline
    `within` would pass during the next sample. `backend`: the unix socket of an app behind a front door on
    $PORT, sampled at each tick too (a tick is good only when both answer 200)."""
    started = time.time()
    first, back, first_ok = _tick(port, path, timeout, within, backend, started)
    first['at'] = 0.0
    samples, backend_samples = [first], [back] if back else []
    if first_ok:
        window = wait_seconds
    else:
        window = min(wait_seconds or DOWN_RESAMPLE_WINDOW, DOWN_RESAMPLE_WINDOW)
        wait_reason = 'no 200 at first: re-sampled for %g s to tell down from flapping' % window
    deadline = started + window
    while time.time() + POLL_INTERVAL < deadline:
        if within is not None and within.remaining() < POLL_INTERVAL + timeout * (2 if backend else 1):
            wait_reason += '; sampling stopped early: %s' % within.why
            break
        time.sleep(POLL_INTERVAL)
        s, back, ok = _tick(port, path, timeout, within, backend, started)
        samples.append(s)
        backend_samples += [back] if back else []
        if first_ok and not ok:
            break
    facts = {
        'url': 'http://127.0.0.1:%d%s' % (port, path),
        'samples': samples,
        'window_seconds': round(window, 1),
        'wait_reason': wait_reason if window else 'service old enough: one sample suffices',
        'elapsed': round(time.time() - started, 2),
    }
    if backend:
        facts['backend'] = {'socket': backend, 'url': 'http://localhost%s over unix:%s' % (path, backend),
                            'samples': backend_samples}
    return facts
