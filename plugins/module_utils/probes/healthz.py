# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""healthz layer: `curl -m 3 http://127.0.0.1:$PORT/healthz`, sampled over a stability window
when the evidence says the service is young enough to still die."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import time

try:
    from http.client import HTTPConnection
except ImportError:  # pragma: no cover - Python 2 is not a target
    HTTPConnection = None

POLL_INTERVAL = 0.5
DOWN_RESAMPLE_WINDOW = 2.0  # a refused or failing service is re-sampled briefly to tell down from flapping


def sample(port, path, timeout=3.0, host='127.0.0.1'):
    """One GET -> dict(status, latency_ms, body, error)."""
    started = time.time()
    conn = HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request('GET', path, headers={'User-Agent': 'sre.gunicorn_doctor', 'Connection': 'close'})
        response = conn.getresponse()
        body = response.read(4096)
        status, error = response.status, None
    except socket.timeout:
        status, body, error = None, b'', 'no answer within %gs' % timeout
    except (IOError, OSError) as e:  # refused, reset, unreachable
        status, body, error = None, b'', getattr(e, 'strerror', None) or str(e) or e.__class__.__name__
    except Exception as e:  # http.client.BadStatusLine and friends: something answered, not HTTP
        status, body, error = None, b'', '%s: %s' % (e.__class__.__name__, e)
    finally:
        conn.close()
    return {
        'status': status,
        'latency_ms': round((time.time() - started) * 1000, 1),
        'body': body[:200].decode('utf-8', 'replace'),
        'error': error,
    }


def collect(port, path, wait_seconds, wait_reason, timeout=3.0):
    """Sample /healthz; keep sampling for `wait_seconds` only when the first answer is 200 and the
    caller has evidence that the service is young, or briefly when the first answer is a failure.
    Sampling ends as soon as a 200 service fails (the flap is proven)."""
    started = time.time()
    samples = []
    first = sample(port, path, timeout)
    first['at'] = 0.0
    samples.append(first)
    if first['status'] == 200:
        window = wait_seconds
    else:
        window = min(wait_seconds or DOWN_RESAMPLE_WINDOW, DOWN_RESAMPLE_WINDOW)
        wait_reason = 'no 200 at first: re-sampled for %g s to tell down from flapping' % window
    deadline = started + window
    while time.time() + POLL_INTERVAL < deadline:
        time.sleep(POLL_INTERVAL)
        s = sample(port, path, timeout)
        s['at'] = round(time.time() - started, 2)
        samples.append(s)
        if first['status'] == 200 and s['status'] != 200:
            break
    return {
        'url': 'http://127.0.0.1:%d%s' % (port, path),
        'samples': samples,
        'window_seconds': round(window, 1),
        'wait_reason': wait_reason if window else 'service old enough: one sample suffices',
        'elapsed': round(time.time() - started, 2),
    }
