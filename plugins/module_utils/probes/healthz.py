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
import threading
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


class Sampler(object):
    """/healthz sampled over a window; `facts()` may be read at any time (the window may end while a sample is
    still waiting for its answer: that one is left out).

    Keeps sampling for `wait_seconds` only when the first answer is 200 and the caller has evidence that the
    service is young, or briefly when the first answer is a failure. A young service that answers only after a few
    failures was still booting: it is watched for the whole window from its first 200 (the failures are kept in
    `booting`).
    Sampling ends as soon as a 200 service fails (the flap is proven), when `stop` is set (the caller's evidence is
    conclusive), or early when the probe's deadline `within` would pass during the next sample.
    `backend`: the unix socket (a path) or loopback port (an int) of an app behind a front door on $PORT, sampled
    at each tick too (a tick is good
    only when both answer 200; the $PORT samples are `samples`, the socket's `backend.samples`). `settled`: the
    caller's reason why a failure at first cannot turn into a 200 soon (no re-sampling then), or None.
    `load`: a function -> (factor, why) by which a loaded host's samples may take longer than `timeout`
    (cpu_load.scale), read before each sample: a host starved of CPU answers late whatever the app does."""

    def __init__(self, port, path, wait_seconds, wait_reason, timeout=TIMEOUT, within=None, backend=None, settled=None,
                 load=None):
        self.port, self.path, self.timeout, self.within, self.backend = port, path, timeout, within, backend
        self.load, self.slowed = load, None   # slowed: (factor, why) of the most a sample's bound grew
        self.settled = settled   # why a failing first answer needs no re-sampling (the caller's evidence), or None
        self.one_sample = 'service old enough: one sample suffices'
        self.backend_samples = []
        self.wait_seconds, self.wait_reason, self.young_reason = wait_seconds, wait_reason, wait_reason
        self.samples, self.booting = [], []
        self.window = 0.0
        self.started = None
        self.last_bound = timeout
        self.first = threading.Event()   # the first answer is in
        self.stop = threading.Event()    # set by the caller: the window is over
        self.failed = False              # a 200 service failed: the window ended on its own evidence
        self.lock = threading.Lock()     # the first sample: recorded by run(), or given up on by the caller

    def _bound(self):
        """One sample's bound: `timeout`, times the host's load factor when it is loaded now."""
        factor, why = self.load() if self.load else (1.0, None)
        if factor > 1.0 and factor > (self.slowed or (1.0,))[0]:
            self.slowed = (factor, why)
        return self.timeout * factor

    def _sample(self):
        """One tick: a sample on $PORT (its 'ok': it, and the backend's when there is one, answered 200)."""
        timeout = self.last_bound = self._bound()
        s = sample(self.port, self.path, timeout, within=self.within)
        s['at'] = round(time.time() - self.started, 2)
        s['ok'] = s['status'] == 200
        if self.backend is not None:
            b = sample(self.backend, self.path, timeout, within=self.within) if isinstance(self.backend, int) \
                else sample(None, self.path, timeout, within=self.within, unix=self.backend)
            b['at'] = round(time.time() - self.started, 2)
            self.backend_samples.append(b)
            s['ok'] = s['ok'] and b['status'] == 200
        return s

    def run(self, started=None):
        """Sample until the window is over (see the class), its times counted from `started` -> the facts."""
        self.started = started or time.time()
        first = self._sample()
        first['at'] = 0.0
        with self.lock:
            if self.first.is_set():
                return self.facts()   # given up on (give_up_first): its late answer is not part of the window
            self.first_ok = first['ok']
            self.samples.append(first)
            self.first.set()
        if first.pop('ok'):
            self.window = self.wait_seconds
        elif self.settled:
            self.one_sample = 'no 200, and %s: one sample suffices' % self.settled
        else:
            self.window = min(self.wait_seconds or DOWN_RESAMPLE_WINDOW, DOWN_RESAMPLE_WINDOW)
            self.wait_reason = 'no 200 at first: re-sampled for %g s to tell down from flapping' % self.window
        while time.time() + POLL_INTERVAL < self.started + self.window:
            if self.within is not None and \
                    self.within.remaining() < POLL_INTERVAL + self.last_bound * (2 if self.backend else 1):
                self.wait_reason += '; sampling stopped early: %s' % self.within.why
                break
            if self.stop.wait(POLL_INTERVAL):
                break
            s = self._sample()
            if self.stop.is_set():
                break   # answered after the window ended: not part of it
            ok = s.pop('ok')
            self.samples.append(s)
            if ok and not self.first_ok and self.wait_seconds and not self.booting:
                self._came_up(s)
            elif self.first_ok and not ok:
                self.failed = True
                break
        return self.facts()

    def give_up_first(self, why):
        """The caller knows nothing can answer the first sample yet (`why`): it is recorded as unanswered so far, not
        waited out to its timeout."""
        with self.lock:
            if self.first.is_set():
                return
            waited = time.time() - (self.started or time.time())
            self.first_ok, self.one_sample = False, why
            self.samples.append({'status': None, 'latency_ms': round(waited * 1000, 1), 'body': '', 'at': 0.0,
                                 'error': 'no answer after %.1f s, not waited for further: %s' % (waited, why)})
            self.stop.set()
            self.first.set()

    def one_sample_suffices(self, why):
        """The caller's evidence made the first sample the last (`why`): no re-sampling, and the facts say so."""
        with self.lock:
            self.window, self.one_sample = 0.0, 'one sample suffices: %s' % why
            self.stop.set()

    def _came_up(self, s):
        """A young service that answers 200 after failures was booting: watch it the whole window from here."""
        self.booting, self.samples = self.samples[:-1], [s]
        self.window = max(self.window, self.wait_seconds)
        self.wait_reason = '%s; it answered 200 only after %g s (still booting)' % (self.young_reason, s['at'])

    def facts(self):
        samples = list(self.samples)
        elapsed = round(time.time() - self.started, 2) if self.started else 0.0
        facts = {
            'url': 'http://127.0.0.1:%d%s' % (self.port, self.path),
            'samples': samples,
            'window_seconds': round(self.window, 1),
            'wait_reason': self.wait_reason if self.window else self.one_sample,
            'elapsed': elapsed,
        }
        if isinstance(self.backend, int):
            facts['backend'] = {'port': self.backend, 'url': 'http://127.0.0.1:%d%s' % (self.backend, self.path),
                                'samples': list(self.backend_samples)}
        elif self.backend is not None:
            facts['backend'] = {'socket': self.backend, 'url': 'http://localhost%s over unix:%s' % (
                self.path, self.backend), 'samples': list(self.backend_samples)}
        if self.booting:
            facts['booting'] = [dict(s) for s in self.booting]
        if self.slowed:
            facts['slow_host'] = {'timeout': round(self.timeout * self.slowed[0], 1), 'why': self.slowed[1]}
        return facts


def collect(port, path, wait_seconds, wait_reason, timeout=TIMEOUT, within=None, backend=None, load=None):
    """Sample /healthz over the window on its own (see Sampler) -> facts."""
    return Sampler(port, path, wait_seconds, wait_reason, timeout, within, backend, load=load).run()
