# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cause table: the single source for the verdict and for the docs.

Each stable id (see the contract) has its layer, default severity, runbook step and numbered cause
(section 6, 1-10) where one fits, the Twilio error a real call shows for it, a one-line meaning and
a remedy template filled with the host's values (`str.format` keys named in braces).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

LAYERS = ('port', 'process', 'listen', 'healthz', 'boot', 'system', 'eventlet', 'voice', 'external')


def _cause(layer, severity, step, number, meaning, remedy, twilio_error=None):
    return {'layer': layer, 'severity': severity, 'runbook_step': step, 'runbook_cause': number,
            'meaning': meaning, 'remedy': remedy, 'twilio_error': twilio_error}


CAUSES = {
    'port_unset': _cause(
        'port', 'warn', '1.2', 1, 'No PORT anywhere in the service environment; the runbook falls back to 8000.',
        'Set PORT to the port the platform routes to in {env_where} (until then every check uses {port}), '
        'and start gunicorn with -b 0.0.0.0:$PORT.'),
    'port_invalid': _cause(
        'port', 'fail', '1.2', 1, 'PORT is empty, not a number, or outside 1-65535: gunicorn exits at once.',
        "Set PORT in {source} to the platform's port, a whole number from 1 to 65535 (now {raw!r}); gunicorn "
        "refuses it with \"Error: '{raw}' is not a valid port number.\""),
    'wrong_port': _cause(
        'listen', 'fail', '1.4', 1, "The app listens, but not on the platform's $PORT: the platform's "
        'health check fails and it SIGTERMs the app after ~10 s.',
        'Bind to $PORT instead of a hard-coded port: replace -b {bound} with -b 0.0.0.0:$PORT (PORT={port}); '
        'the canonical command is: {command}'),
    'bind_loopback_only': _cause(
        'listen', 'fail', '1.3', 1, 'The app listens on $PORT on loopback only: nothing outside the host '
        '(proxy, platform health check) can reach it.',
        'Bind to all interfaces: -b 0.0.0.0:$PORT instead of -b {bound} (the canonical command is: {command})'),
    'not_listening': _cause(
        'listen', 'fail', '1.4', 1, 'Nothing listens on $PORT.',
        'Start the app with the canonical command and watch for "Listening at: http://0.0.0.0:{port}": '
        '{command}'),
    'multiple_runners': _cause(
        'process', 'fail', '3.3', 6, 'More than one gunicorn master of the app runs: two runners start and '
        'stop it in parallel.',
        'Keep one runner: stop the masters not started by the service manager ({extra}) and remove the second '
        'start path (a shell loop, cron entry, nohup in a deploy script).'),
    'stray_processes': _cause(
        'process', 'warn', '1.1', 6, 'Earlier runs of the app (dev servers, python main.py) are still alive '
        'and compete for ports and resources.',
        'Stop them (TERM, then KILL after a grace period): {extra}; only gunicorn should run the app '
        '(stabilize.yml does this safely).'),
    'periodic_sigterm': _cause(
        'process', 'fail', '3.3', 6, 'The master is SIGTERMed again and again: a runner or the platform '
        'health check restarts it.',
        "Find who sends TERM ({extra}); point the platform's health check at $PORT={port} and "
        '{healthz_path}, and keep one runner.'),
    'healthz_missing': _cause(
        'healthz', 'fail', '1.4', None, 'The health endpoint answers 404.',
        'Add a GET {healthz_path} route returning 200 (or set doctor_healthz_path to the route the app has).'),
    'healthz_error': _cause(
        'healthz', 'fail', '1.4', None, 'The health endpoint answers a 5xx.',
        'Read the traceback in the gunicorn log around the failing request and fix the handler of '
        '{healthz_path}; keep it free of external calls.'),
    'healthz_flapping': _cause(
        'healthz', 'fail', '1.4', 1, '/healthz answers 200 and then stops answering: the worker or master '
        'dies or is killed.',
        'Look at the causes of the process, boot and system layers; the usual reasons are a wrong $PORT '
        '(SIGTERM after ~10 s) or two runners.'),
    'boot_exception': _cause(
        'boot', 'fail', '2.1', None, 'The app raises while it is imported or created: the worker never boots.',
        'Fix the exception shown in the evidence; reproduce it in seconds with: {dry_import_command}'),
    'slow_boot': _cause(
        'boot', 'fail', '2.2', 5, 'Importing the app takes longer than the worker may take to boot: it never '
        'reaches listening (gunicorn does not time out a worker still importing).',
        'Make heavy imports and client set-up lazy (first request, or a background thread) so the import '
        'takes seconds; until then raise --timeout above {extra}.'),
    'dev_server_at_import': _cause(
        'boot', 'fail', '3.2', 2, 'A dev server (app.run()) starts when the app is imported, inside the '
        'gunicorn worker.',
        'Put app.run() under `if __name__ == "__main__":` ({extra}); only gunicorn runs the app.'),
    'worker_timeout': _cause(
        'boot', 'fail', '2.1', 5, 'gunicorn kills workers that stop answering for --timeout seconds.',
        'Find the blocking call (the request logged before each WORKER TIMEOUT); under -k sync each open '
        'WebSocket holds a worker, so raise --timeout above the longest call or use -k eventlet.'),
    'missing_env': _cause(
        'boot', 'fail', '2.1', 9, 'The app reads an environment variable that the service does not set.',
        'Set {extra} in the service environment ({env_where}), and start with --preload --capture-output '
        'so such errors reach the log.'),
    'disk_full': _cause(
        'system', 'fail', '3.1', 4, 'A filesystem the app writes to is (nearly) full: gunicorn starts and '
        'dies, or logs nothing (ENOSPC is dropped silently).',
        'Free space on {extra} (archive old logs, clean temp files), then restart the service.'),
    'fd_limit_low': _cause(
        'system', 'fail', '3.1', 4, 'The open-files limit is below 1024: sockets and logs run out.',
        'Raise the limit to at least 4096 where the service starts (systemd LimitNOFILE=, supervisord '
        'minfds=, or ulimit -n in the start script); now: {extra}.'),
    'memory_pressure': _cause(
        'system', 'warn', '3.1', None, 'Little memory is available: the OOM killer is near.',
        'Free memory or add swap/RAM; the largest processes now: {extra}.'),
    'oom_killed': _cause(
        'system', 'fail', '3.1', None, 'The kernel OOM killer killed processes of the app.',
        'Lower the memory use (fewer workers, lazy loading) or give the host more memory; see {extra}.'),
    'eventlet_incompatible': _cause(
        'eventlet', 'fail', '4.1', 3, 'The installed eventlet/greenlet/gunicorn versions cannot run the '
        'eventlet worker together.', 'Pin a combination that works (see the compatibility table).'),
    'eventlet_env_missing': _cause(
        'eventlet', 'warn', '4.1', 3, 'EVENTLET_NO_GREENDNS / EVENTLET_HUB are not set for an eventlet service.',
        'Set EVENTLET_NO_GREENDNS=1 and EVENTLET_HUB=selects in the service environment.'),
    'eventlet_env_invalid': _cause(
        'eventlet', 'fail', '4.1', 3, 'EVENTLET_HUB names a hub eventlet does not have (the runbook\'s '
        '"select" is one).', 'Use EVENTLET_HUB=selects (or poll/epolls); "select" does not exist.'),
    'async_lib_conflict': _cause(
        'eventlet', 'warn', '4.2', 3, 'gevent or uvloop is installed beside eventlet.',
        'Remove gevent/uvloop from the app environment unless the app imports them.'),
    'monkey_patch_misplaced': _cause(
        'eventlet', 'fail', '4.2', 3, 'eventlet.monkey_patch() runs late or twice.',
        'Call eventlet.monkey_patch() once, as the first statement of the entry module.'),
    'gcp_credentials_missing': _cause(
        'voice', 'fail', '5.3', 9, 'Google credentials are missing or unreadable.',
        'Point GOOGLE_APPLICATION_CREDENTIALS at a readable service-account JSON file.'),
    'twiml_invalid': _cause(
        'voice', 'fail', '5.1', None, 'The TwiML webhook does not return <Connect><Stream url="wss://...">.',
        'Return <Response><Connect><Stream url="wss://HOST/ws/twilio-media"/></Connect></Response>.',
        twilio_error=31922),
    'twiml_double_slash': _cause(
        'voice', 'fail', '5.1', None, 'The stream URL has // in its path.',
        'Strip the trailing / of PUBLIC_BASE_URL before joining the path.', twilio_error=31923),
    'status_callback_not_204': _cause(
        'voice', 'warn', '5.1', None, 'The stream status callback does not answer an empty 204.',
        'Return ("", 204) from the status callback and read request.form only.'),
    'ws_handshake_failed': _cause(
        'voice', 'fail', '5.2', None, 'The WebSocket handshake does not answer 101.',
        'Serve the media stream path with a real WebSocket endpoint.', twilio_error=31920),
    'ws_subprotocol_missing': _cause(
        'voice', 'fail', '5.2', None, 'The handshake does not echo the audio.twilio.com subprotocol.',
        'Configure the WebSocket server to accept the audio.twilio.com subprotocol.', twilio_error=31920),
    'media_format_invalid': _cause(
        'voice', 'fail', '5.3', None, 'Audio sent back is not 20 ms frames of 8 kHz mono mu-law.',
        'Send base64 of exactly 160 bytes of mu-law per 20 ms media message.', twilio_error=31924),
    'external_unreachable': _cause(
        'external', 'fail', '0', 7, 'PUBLIC_BASE_URL does not reach the app although it works locally.',
        'Point the proxy/platform at $PORT; probe from outside only through PUBLIC_BASE_URL.',
        twilio_error=31902),
}


def render_remedy(cause_id, values):
    """The remedy template of `cause_id` filled with `values`; a missing value reads as '?' rather
    than failing the whole report."""
    class Lenient(dict):
        def __missing__(self, key):
            return '?'
    return CAUSES[cause_id]['remedy'].format_map(Lenient(values))
