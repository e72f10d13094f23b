# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cause table: the single source for the verdict and for the docs.

Each stable id (see the contract) has its layer, default severity, runbook step and numbered cause
(section 6, 1-10) where one fits, the Twilio error a real call shows for it, a one-line meaning,
a remedy template filled with the host's values (`str.format` keys named in braces) and, for the
docs only, `evidence`: what the probes observe to decide the cause (docs/causes.md is generated
from this table by scripts/gen_cause_docs.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

LAYERS = ('port', 'process', 'listen', 'healthz', 'boot', 'system', 'eventlet', 'voice', 'external')


def _cause(layer, severity, step, number, meaning, remedy, twilio_error=None, evidence=''):
    # `evidence` describes the check for the docs; the verdict copies only the keys the report's
    # cause objects have (verdict.Layer.cause), so it never reaches a report.
    return {'layer': layer, 'severity': severity, 'runbook_step': step, 'runbook_cause': number,
            'meaning': meaning, 'remedy': remedy, 'twilio_error': twilio_error, 'evidence': evidence}


CAUSES = {
    'port_unset': _cause(
        'port', 'warn', '1.2', 1, 'No PORT anywhere in the service environment; the runbook falls back to 8000.',
        'Set PORT to the port the platform routes to in {env_where} (until then every check uses {port}), '
        'and start gunicorn with -b 0.0.0.0:$PORT.',
        evidence="No PORT in any place the port layer reads, in this order: doctor_port, each running master's "
        '/proc/<pid>/environ, the env file (doctor_env_file), the systemd units and supervisord programs that run '
        'the app.'),
    'port_invalid': _cause(
        'port', 'fail', '1.2', 1, 'PORT is empty, not a number, or outside 1-65535: gunicorn exits at once.',
        "Set PORT in {source} to the platform's port, a whole number from 1 to 65535 (now {raw!r}); gunicorn "
        "refuses it with \"Error: '{raw}' is not a valid port number.\"",
        evidence="The first PORT found (doctor_port, a running master's /proc environ, the env file, a systemd unit, a "
        "supervisord program) is not a whole number from 1 to 65535; the current run's \"Error: '...' is not a valid "
        'port number" lines of the gunicorn log are quoted.'),
    'wrong_port': _cause(
        'listen', 'fail', '1.4', 1, "The app listens, but not on the platform's $PORT: the platform's "
        'health check fails and it SIGTERMs the app after ~10 s.',
        'Bind to $PORT instead of a hard-coded port ({bound}): {bind_change} (PORT={port}); '
        'the canonical command line is: {command}',
        evidence="The master's listening sockets from psutil vs $PORT from doctor_port, the running master's /proc environ, "
        'the env file, the systemd unit or supervisord program: no process of the app listens on $PORT, one '
        'listens on another port (other holders of $PORT are named). When the app is older than the stability '
        'window, one GET of the health path on the port its master listens on (loopback) shows whether it serves '
        'there; a 200 proves it boots, so the dry import and the spare-port boot are not run.'),
    'bind_loopback_only': _cause(
        'listen', 'fail', '1.3', 1, 'The app listens on $PORT on loopback only: nothing outside the host '
        '(proxy, platform health check) can reach it.',
        'Bind to all interfaces instead of {bound}: {bind_change} (the canonical command line is: {command})',
        evidence="The app's sockets on $PORT (psutil, each master's own LISTEN sockets) all have loopback addresses: 127.x, "
        '::1, ::ffff:127.x or localhost.'),
    'not_listening': _cause(
        'listen', 'fail', '1.4', 1, 'Nothing listens on $PORT.',
        'Start the app with the canonical command and watch for "Listening at: http://0.0.0.0:{port}": '
        '{command}',
        evidence="psutil shows no LISTEN socket of the app's processes, on $PORT or elsewhere; other holders of $PORT, the "
        'masters that listen nowhere and the last boot-failure, shutdown and SIGTERM lines of the log are added.'),
    'proxy_backend_down': _cause(
        'listen', 'fail', '1.4', 1, 'The app is bound to a unix socket (or a loopback port) behind a reverse proxy that '
        'holds $PORT, and nothing of it answers behind the proxy: a stale socket file with no listener (gunicorn killed '
        'or gone), no socket at all, nothing on the port, or the proxy answering 502 because its upstream does not '
        'reach the app.',
        '{extra} Keep $PORT with the front door ({proxy}) and gunicorn on its {backend_kind}: start it again with -b '
        '{backend}{backend_note}: {command}; check the {backend_kind} with: {backend_check}, then through the front '
        'door: curl http://127.0.0.1:{port}{healthz_path}',
        evidence="Only when the app is bound to a unix socket (a master's binds, else the log's last \"Listening at: "
        'unix:...", or the unix upstreams of the front door\'s readable config), or to a loopback port the front '
        'door\'s config forwards to, and a process that is not the app holds $PORT: no process of the app accepts on '
        'the socket (/proc/net/unix and the processes\' fds) or listens on the port, or /healthz there answers while '
        'GET /healthz through the front door answers 502/503/504.'),
    'front_door_down': _cause(
        'listen', 'fail', '1.4', 7, 'The app accepts on its unix socket, but nothing listens on $PORT: the reverse '
        'proxy in front of it (nginx) is down or listens elsewhere.',
        'Start the reverse proxy that listens on $PORT={port} and forwards to unix:{socket} (check its config '
        'first, e.g. nginx -t, then systemctl start nginx); gunicorn keeps its socket.',
        evidence="A process of the app accepts on a unix socket it is bound to, and no process listens on $PORT."),
    'multiple_runners': _cause(
        'process', 'fail', '3.3', 6, 'More than one gunicorn master of the app runs: two runners start and '
        'stop it in parallel.',
        'Keep one runner: stop the masters not started by the service manager ({extra}) and remove the second '
        'start path (a shell loop, cron entry, nohup in a deploy script).',
        evidence='The process table (psutil) holds more than one gunicorn master of the app (its app spec in the command '
        "line, running in the app directory); each master's runner comes from walking its parent processes."),
    'stray_processes': _cause(
        'process', 'warn', '1.1', 6, 'Earlier runs of the app (dev servers, python main.py) are still alive '
        'and compete for ports and resources.',
        'Stop them (TERM, then KILL after a grace period): {extra}; only gunicorn should run the app '
        '(stabilize.yml does this safely).',
        evidence='Non-gunicorn processes of the app in the process table: python commands that run the app module '
        '(-m in the app directory, or the module\'s own file as the script), flask run there, and gunicorn workers '
        'whose master is gone.'),
    'periodic_sigterm': _cause(
        'process', 'fail', '3.3', 6, 'The master is SIGTERMed again and again: a runner or the platform '
        'health check restarts it.',
        "Stop the restarts where they come from: {extra}. Point the platform's health check at $PORT={port} and "
        '{healthz_path}, and keep one runner.',
        evidence='A master of the app was replaced by a new one during the stability window (the process table is looked '
        'at every 0.25 s through the window, whatever /healthz answers), or the gunicorn log (doctor_log_file) holds two '
        'or more "Handling signal: term" lines, or two or more masters that listened and were stopped from outside (shut '
        'down after a SIGTERM, or gone without a line), in its last 10 minutes while the current master is younger than '
        'that (or none runs). A master that gives up on its own ("Reason: Worker failed to boot.") is not stopped from '
        'outside: a crash loop is its boot cause, not this one. The evidence gives what the window saw, the '
        'pattern ("restarted 5 times in 60 s, every 8 s +/- 1"), a timeline of the last masters and who restarts them: a '
        'shell loop, supervisord program (autorestart=, startsecs=), systemd unit (Restart=, WatchdogSec=) or cron, from '
        'the masters\' parent chain and the service manager\'s files, and local health checks that ask another port.'),
    'healthz_missing': _cause(
        'healthz', 'fail', '1.4', None, 'The health endpoint answers 404.',
        'Add a GET {healthz_path} route returning 200 (or set doctor_healthz_path to the route the app has).',
        evidence='GET <healthz path> on 127.0.0.1:$PORT (3 s timeout, sampled over the stability window while the service '
        'is young) never answers 200 and answers 404.'),
    'healthz_error': _cause(
        'healthz', 'fail', '1.4', None, 'The health endpoint answers a 5xx.',
        'Read the traceback in the gunicorn log around the failing request and fix the handler of '
        '{healthz_path}; keep it free of external calls.',
        evidence='The healthz samples (GET <healthz path> on 127.0.0.1:$PORT) never answer 200 and answer a 5xx; the '
        'last traceback of the gunicorn log is added when a log is set.'),
    'healthz_flapping': _cause(
        'healthz', 'fail', '1.4', 1, '/healthz answers 200 and then stops answering: the worker or master '
        'dies or is killed.',
        'Look at the causes of the process, boot and system layers; the usual reasons are a wrong $PORT '
        '(SIGTERM after ~10 s) or two runners.',
        evidence='Among the healthz samples (every 0.5 s over the stability window) some answer 200 and others do not: an '
        'error status, a refused connection or no answer within 3 s (longer on a host whose run queue is over its CPUs: '
        'up to 8x, the check says how long); or every sample was a 200 but the master that served '
        'them exited or was replaced during the window (the window ends as soon as that is seen).'),
    'boot_exception': _cause(
        'boot', 'fail', '2.1', None, 'The app raises while it is imported or created: the worker never boots.',
        'Fix the exception shown in the evidence; reproduce it in seconds with: {dry_import_command}',
        evidence="The dry import (the app's own python imports the app in the app directory and GETs healthz through "
        'test_client) raises; or a gunicorn --preload -k sync boot on a spare loopback port fails, or the current '
        "run's log shows Worker failed to boot / App failed to load / Exception in worker process (when a crash loop's "
        'newest master has not failed yet, the run before it); a master that keeps failing and is started again adds '
        'the pattern and the runner that restarts it.'),
    'slow_boot': _cause(
        'boot', 'fail', '2.2', 5, 'Importing the app takes longer than the worker may take to boot: it never '
        'reaches listening (gunicorn does not time out a worker still importing).',
        'Make heavy imports and client set-up lazy (first request, or a background thread) so the import '
        'takes seconds; until then raise --timeout above {extra}: {timeout_change}.',
        evidence="The dry import takes half the master's --timeout or more (warn), or the whole timeout (it is stopped then: "
        "the service's effective --timeout, not doctor_boot_timeout, bounds it), or does not finish within "
        'doctor_boot_timeout; or the spare-port --preload boot never reaches "Listening at"; or a worker of the '
        'service has been booting for longer than its --timeout (its heartbeat file untouched since its fork).'),
    'dev_server_at_import': _cause(
        'boot', 'fail', '3.2', 2, 'A dev server (app.run()) starts when the app is imported, inside the '
        'gunicorn worker.',
        'Put app.run() under `if __name__ == "__main__":` ({extra}); only gunicorn runs the app.',
        evidence="An ast scan of the app's package finds app.run() / socketio.run() / run_simple() reachable at import "
        '(outside defs, classes and the __main__ guard), the dry import records such a call, or the log shows "* '
        'Running on" or the development-server banner.'),
    'worker_timeout': _cause(
        'boot', 'fail', '2.1', 5, 'gunicorn kills workers that stop answering for --timeout seconds.',
        'Find the blocking call (the request logged before each WORKER TIMEOUT); under -k sync each open '
        'WebSocket holds a worker, so raise --timeout above the longest call or use -k eventlet.',
        evidence='"WORKER TIMEOUT (pid:N)" lines in the gunicorn log since the current master started.'),
    'missing_env': _cause(
        'boot', 'fail', '2.1', 9, 'The app reads an environment variable that the service does not set.',
        'Set {extra} in the service environment ({env_where}), and start with --preload --capture-output '
        'so such errors reach the log.',
        evidence='The dry import dies with a KeyError raised in os.environ (last frame in os.py), or a boot failure in the '
        "log ends in a traceback with KeyError: 'NAME' from os.environ."),
    'disk_full': _cause(
        'system', 'fail', '3.1', 4, 'A filesystem the app writes to is (nearly) full: gunicorn starts and '
        'dies, or logs nothing (ENOSPC is dropped silently).',
        'Free space on {extra} (archive old logs, clean temp files), then restart the service.',
        evidence="statvfs of the filesystems holding the app directory, the log's directory and the temp directory: fail at "
        '99% used, under 16 MiB free or 99.5% of inodes used; warn from 95% used.'),
    'fd_limit_low': _cause(
        'system', 'fail', '3.1', 4, 'The open-files limit is below 1024: sockets and logs run out.',
        'Raise the limit to at least 4096 where the service starts (systemd LimitNOFILE=, supervisord '
        'minfds=, or ulimit -n in the start script); now: {extra}.',
        evidence='The soft "Max open files" in /proc/<pid>/limits of each master is below 1024 (fail), or the probe\'s own '
        'soft RLIMIT_NOFILE, what a fresh shell and a restarted service get, is (warn).'),
    'memory_pressure': _cause(
        'system', 'warn', '3.1', None, 'Little memory is available: the OOM killer is near.',
        'Free memory or add swap/RAM; the largest processes now: {extra}.',
        evidence='psutil.virtual_memory(): less than 10% of memory available (warn), less than 3% (fail); the processes '
        'with the largest RSS are named.'),
    'oom_killed': _cause(
        'system', 'fail', '3.1', None, 'The kernel OOM killer killed processes of the app.',
        'Lower the memory use (fewer workers, lazy loading) or give the host more memory; see {extra}.',
        evidence='dmesg OOM-killer lines naming a gunicorn or python process (fail), or "Worker (pid:N) was sent SIGKILL! '
        'Perhaps out of memory?" in the current run\'s log for a worker without a WORKER TIMEOUT (warn).'),
    'eventlet_incompatible': _cause(
        'eventlet', 'fail', '4.1', 3, 'The installed eventlet/greenlet/gunicorn versions cannot run the '
        'eventlet worker together (or eventlet cannot run the app here while sync can).',
        'Install a combination that runs the eventlet worker on Python {python}: {pip_command}. The runbook\'s '
        '"eventlet >= 0.33.3" is out of date: gunicorn 24/25 refuse eventlet < 0.40.3 and gunicorn 26+ has no '
        'eventlet worker, so pin gunicorn below 26 ({pins}). {fallback}',
        evidence="Only when the service uses eventlet: gunicorn/eventlet/greenlet versions read in the app's interpreter "
        "against eventlet_compat's tables for its Python, the log's incompatibility errors, and a spare-port "
        'gunicorn --preload -k eventlet boot that fails where sync boots.'),
    'eventlet_env_missing': _cause(
        'eventlet', 'warn', '4.1', 3, 'EVENTLET_NO_GREENDNS / EVENTLET_HUB are not set for an eventlet service.',
        'Add {env_lines} to {env_where_eventlet}, then restart the service. Use "yes": eventlet reads only '
        'EVENTLET_NO_GREENDNS=yes (the runbook\'s =1 leaves green DNS on), and a hub that exists (selects, poll, '
        'epolls; not the runbook\'s "select").',
        evidence="EVENTLET_NO_GREENDNS or EVENTLET_HUB is unset in a running eventlet master's /proc environ or in what its "
        'runner sets next start (env file, systemd unit, supervisord program).'),
    'eventlet_env_invalid': _cause(
        'eventlet', 'fail', '4.1', 3, 'EVENTLET_HUB names a hub eventlet does not have (the runbook\'s '
        '"select" is one), or EVENTLET_NO_GREENDNS has a value eventlet ignores while green DNS fails.',
        'Set {env_lines} in {env_where_eventlet}, then restart: EVENTLET_HUB names the module '
        'eventlet.hubs.<value> - selects, poll, epolls (Linux), kqueue (BSD) or asyncio; the runbook\'s "select" '
        'does not exist. Only EVENTLET_NO_GREENDNS=yes turns green DNS off.',
        evidence="In a running eventlet master's /proc environ or what its runner sets next start (the env file, the unit, "
        'the supervisord program; with no master alive, the /proc environ of the shell loop or platform runner that '
        "restarts it), EVENTLET_HUB is empty, names no hub of the installed eventlet or one this platform's select lacks, "
        'or EVENTLET_NO_GREENDNS is not yes while the log shows green-DNS errors; or the log says the hub cannot be '
        'loaded where no environment could be read.'),
    'async_lib_conflict': _cause(
        'eventlet', 'warn', '4.2', 3, 'gevent or uvloop is installed beside eventlet.',
        'Remove {extra} from the app environment: {pip_uninstall}; and from its requirements.',
        evidence="gevent or uvloop is installed in the app's interpreter beside eventlet (importlib.metadata); fail when "
        'the log or the spare-port eventlet boot names it.'),
    'monkey_patch_misplaced': _cause(
        'eventlet', 'warn', '4.2', 3, 'eventlet.monkey_patch() runs late (after networking/threading imports) or '
        'more than once.',
        'Call eventlet.monkey_patch() once, right after `import eventlet` as the first statements of {where}, '
        'before any other import: {others}.',
        evidence="An ast scan of the app's package finds eventlet.monkey_patch() after other imports, inside a function or "
        'more than once; the dry import traces each call and the networking/threading modules imported before the '
        'first.'),
    'gcp_credentials_missing': _cause(
        'voice', 'fail', '5.3', 9, 'Google credentials are missing, unreadable by the service user, or not a '
        'service-account key (type, project_id, private_key, client_email): speech fails at the first call and '
        'callers hear silence.',
        '{fix} Restart the service afterwards, so that the master has it in its environment, and check as the '
        'service user with: {check}',
        evidence="The service environment (the master's /proc environ, else the env file): the file "
        'GOOGLE_APPLICATION_CREDENTIALS names (exists, readable by the service user, JSON with type, project_id, a '
        'PEM private_key, client_email; values never read out) or the JSON in the variable '
        "doctor_gcp_credentials_env names; unset counts when the app's source uses Google Cloud off Google Cloud."),
    'twiml_invalid': _cause(
        'voice', 'fail', '5.1', None, 'The TwiML webhook does not return a <Response> whose <Start><Stream> '
        '(one-way) or <Connect><Stream> (two-way) Twilio can follow. twilio_error is the table\'s 31922 (not wss://) '
        'or what this instance shows: 31923 malformed URL, 31920 wrong path, 31941 a track the verb does not take, '
        '11200 failing webhook, 12100 not XML.',
        'Make POST {path} return text/xml <Response> with {expected_twiml}: {fix}',
        twilio_error=31922,
        evidence="POST <incoming call path> on 127.0.0.1:$PORT with Twilio's form fields, the public Host and "
        'X-Forwarded-Proto (signed when doctor_twilio_auth_token is set): anything but 200 XML with '
        '<Start><Stream url> or <Connect><Stream url> to an absolute wss:// URL on the public host, by Twilio\'s '
        '<Stream> rules: a track the verb takes, a verb after <Start> (else the call hangs up), none after <Connect> '
        '(a warning: they run only once the app closes the stream), <Parameter> with name and value.'),
    'twiml_double_slash': _cause(
        'voice', 'fail', '5.1', None, 'The stream URL has // in its path (a base URL with a trailing / joined '
        'with "/ws/..."): the path no longer matches the WebSocket route.',
        '{fix} The stream URL must read {expected_url} (now {stream_url}).', twilio_error=31923,
        evidence='The <Stream url> in the TwiML that POST <incoming call path> on 127.0.0.1:$PORT returns has // in '
        'its path.'),
    'status_callback_not_204': _cause(
        'voice', 'warn', '5.1', None, 'The stream status callback does not answer an empty 204.',
        'Return an empty 204 from the {path} handler (return "", 204; it answers {answer} now) and read '
        'request.form only (Twilio posts form data).',
        evidence="POST <stream status path> with Twilio's stream-started form fields answers anything but an empty 204."),
    'ws_handshake_failed': _cause(
        'voice', 'fail', '5.2', None, 'The media-stream path does not answer the WebSocket upgrade with a valid '
        '101 Switching Protocols.',
        'Serve {ws_path} with a WebSocket endpoint (flask-sock: @sock.route("{ws_path}") instead of a plain '
        '@app.route) that answers the upgrade with 101. {fix} Check with: {check} (it must print '
        '"HTTP/1.1 101").', twilio_error=31920,
        evidence='A WebSocket upgrade of <ws path> on 127.0.0.1:$PORT offering audio.twilio.com gets no answer, a status '
        'other than 101, or a 101 with wrong Upgrade/Connection headers or a Sec-WebSocket-Accept that does not '
        'match the key.'),
    'ws_subprotocol_missing': _cause(
        'voice', 'fail', '5.2', None, 'The handshake answers 101 but does not echo the audio.twilio.com '
        'subprotocol Twilio offers: Twilio drops the stream.',
        'Accept the subprotocol: with flask-sock set app.config["SOCK_SERVER_OPTIONS"] = {{"subprotocols": '
        '["audio.twilio.com"]}} before Sock(app) (another server: list audio.twilio.com among its accepted '
        'subprotocols). Check with: {check} (it must print "Sec-WebSocket-Protocol: audio.twilio.com").',
        twilio_error=31920,
        evidence='A WebSocket upgrade of <ws path> on 127.0.0.1:$PORT offering audio.twilio.com gets a valid 101 '
        'without Sec-WebSocket-Protocol: audio.twilio.com.'),
    'media_format_invalid': _cause(
        'voice', 'fail', '5.3', None, 'What the app sends on the media stream is not what Twilio accepts: JSON '
        'text frames, only media/mark/clear events with the call\'s streamSid, each media payload base64 of '
        'exactly 160 bytes (20 ms) of 8 kHz mono mu-law.',
        'Send every 20 ms of audio as {{"event": "media", "streamSid": start.streamSid, "media": {{"payload": '
        'base64 of 160 bytes of 8 kHz mono mu-law}}}}: {fix}', twilio_error=31924,
        evidence='A one-second call over the WebSocket at <ws path> (connected, start, 50 media frames of 20 ms mu-law, '
        'mark, stop) checks every frame the app sends: binary or non-JSON frames, events other than media/mark/clear, '
        'another streamSid, payloads that are not base64 of 160 bytes of mu-law.'),
    'external_unreachable': _cause(
        'external', 'fail', '0', 7, 'The public URL (PUBLIC_BASE_URL), checked from the controller over https '
        'and wss, does not reach the app although /healthz answers on 127.0.0.1:$PORT: a proxy, router or firewall '
        'aimed at another port (runbook cause 7), a name that leads to another host (cause 10), or a certificate '
        'Twilio does not trust. Each report sets runbook_cause and twilio_error to what its evidence shows.',
        '{extra} Then check again from outside the server: {external_check}',
        twilio_error=31902,
        evidence='From the controller, only once /healthz is a stable 200 locally: GET PUBLIC_BASE_URL + healthz over '
        'https and the Twilio handshake over wss, TLS verified, short timeouts (5 s by default); DNS, the error class, '
        "the proxy's status, the certificate and whether the name resolves to the server's own addresses tell cause 7 "
        'from cause 10.'),
}


# What a user sees when something else is the fault (nothing listens, /healthz flaps): the report lists these after
# the failing causes of later layers that explain them (a boot exception, an invalid EVENTLET_HUB).
SYMPTOMS = ('not_listening', 'healthz_flapping')


def render_remedy(cause_id, values):
    """The remedy template of `cause_id` filled with `values`; a missing value reads as '?' rather
    than failing the whole report."""
    class Lenient(dict):
        def __missing__(self, key):
            return '?'
    return CAUSES[cause_id]['remedy'].format_map(Lenient(values))
