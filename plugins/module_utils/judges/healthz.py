# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The healthz layer: a stable 200 on the health path, from the app itself (facts['healthz'])."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared, window


def answers_in_runs(samples, most=4):
    """The samples' answers as runs, so a long window stays one short phrase: '26 x 200', or
    '3 x 200, then 2 x 502, then 1 x connection refused'."""
    runs = []
    for s in samples:
        answer = str(s['status']) if s['status'] else (s['error'] or 'no answer')
        if runs and runs[-1][0] == answer:
            runs[-1][1] += 1
        else:
            runs.append([answer, 1])
    text = ', then '.join('%d x %s' % (count, answer) for answer, count in runs[:most])
    if len(runs) > most:
        text += ', then %d more changes' % (len(runs) - most)
    return text or 'no samples'


def judge(facts, layer):
    h = facts['healthz']
    samples = h['samples']
    ok = [s for s in samples if s['status'] == 200]
    summary = '%s over %.1f s (%s)' % (answers_in_runs(samples), h['elapsed'], h['wait_reason'])
    if h.get('booting'):
        summary += '; before that, while it booted: %s' % answers_in_runs(h['booting'])
    if h.get('slow_host'):
        # A host starved of CPU answers late whatever the app does: its samples were given longer (probes/cpu_load.py).
        slow = h['slow_host']
        summary += '; each answer allowed up to %g s on this loaded host (%s)' % (slow['timeout'], slow['why'])
    strangers = shared.answered_by_stranger(facts)
    if ok and strangers:
        layer.check('stable 200', 'fail', '%s, but from pid %s (%s), which is not the app' % (
            summary, strangers[0]['pid'], strangers[0]['name']))
        return
    if h.get('backend'):
        judge_behind_door(facts, layer, h, summary)
        return
    if shared.healthz_stable(facts):
        latency = max(s['latency_ms'] for s in samples)
        layer.check('stable 200', 'pass', '%s; slowest %.0f ms; body %r' % (summary, latency, samples[0]['body'][:80]))
        return
    exits = [window.describe_exit(m) for m in shared.serving_master_exits(facts)]
    restarts = window.worker_restarts(facts)
    if ok and len(ok) == len(samples) and exits:
        # Every sample was a 200, yet the master went: the window saw it even though HTTP did not (yet).
        layer.check('stable 200', 'fail', '%s, but %s%s' % (summary, exits[0], window.ended_early(facts)))
        layer.cause('healthz_flapping', ['%s answered 200, then %s' % (h['url'], exits[0])] + exits[1:] + restarts +
                    [summary])
        return
    layer.check('stable 200', 'fail', '%s at %s' % (summary, h['url']))
    _app_causes(facts, layer, samples, h['url'], summary)


def judge_behind_door(facts, layer, h, summary):
    """An app on a unix socket behind a front door on $PORT: healthy when both answer a stable 200. The app's own
    answers (over its socket) decide the app's causes; a front door that fails while the socket answers names
    the proxy's dead backend."""
    door = shared.front_door(facts) or {}
    back = h['backend']['samples']
    back_summary = answers_in_runs(back)
    door_ok = all(s['status'] == 200 for s in h['samples'])
    back_ok = bool(back) and all(s['status'] == 200 for s in back)
    layer.check('stable 200', 'pass' if door_ok else 'fail', '%s at %s, through the front door %s' % (
        summary, h['url'], shared.describe_door(door) if door else 'on $PORT'))
    layer.check('stable 200 over the socket' if h['backend'].get('socket') else 'stable 200 on the backend port',
                'pass' if back_ok else 'fail', '%s at %s' % (back_summary, h['backend']['url']))
    # A front door that fails while the backend answers is named by the listen layer (proxy_backend_down).
    if not back_ok and shared.backend_answers(facts):
        # The app accepts on its socket but does not answer well there: its own causes (the listen layer names
        # a socket nothing accepts on).
        _app_causes(facts, layer, back, h['backend']['url'], back_summary)


def _app_causes(facts, layer, samples, url, summary):
    """Why the app's own /healthz answers are not a stable 200: a flap, a 404, a 5xx."""
    statuses = [s['status'] for s in samples]
    ok = [s for s in samples if s['status'] == 200]
    h = {'url': url}
    if ok and len(ok) < len(samples):
        bad = next(s for s in samples if s['status'] != 200)
        exits = [window.describe_exit(m) for m in shared.serving_master_exits(facts)]
        restarts = window.worker_restarts(facts)
        layer.cause('healthz_flapping', ['%s answered 200, then %s after %.1f s' % (
            h['url'], bad['status'] or bad['error'], bad['at'])] + exits + restarts + [summary])
    elif 404 in statuses:
        layer.cause('healthz_missing', ['GET %s -> 404 body %r' % (h['url'], samples[statuses.index(404)]['body'][:120])])
    elif any(s and s >= 500 for s in statuses):
        first = next(s for s in samples if s['status'] and s['status'] >= 500)
        evidence = ['GET %s -> %d body %r' % (h['url'], first['status'], first['body'][:120])]
        tb = (facts.get('log') or {}).get('tracebacks') or []
        if tb:
            evidence.append('last traceback in the log: %s' % tb[-1]['exception'])
        layer.cause('healthz_error', evidence)
