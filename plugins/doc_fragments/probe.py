# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The inputs every probe module shares (the contract's doctor_* variables without the prefix).
    DOCUMENTATION = r'''
options:
  app:
    description: WSGI target of the service, C(MODULE:VARIABLE) (variable C(doctor_app)).
    type: str
    required: true
  chdir:
    description: Directory gunicorn runs the app from (variable C(doctor_chdir)).
    type: path
    required: true
  python:
    description: The app's interpreter, usually its venv python (variable C(doctor_python)).
    type: str
    default: python3
  port:
    description:
      - The port the platform expects (variable C(doctor_port)).
      - When unset, C(PORT) from the running master's environment, I(env_file), a systemd unit or a
        supervisord program running I(app); else 8000 with a warning.
    type: str
  env_file:
    description: Dotenv-style file holding the service environment (variable C(doctor_env_file)).
    type: path
  log_file:
    description: Gunicorn's error log (variable C(doctor_log_file)).
    type: path
  systemd_unit_dir:
    description:
      - Where the service's systemd unit is (variable C(doctor_systemd_unit_dir)); read before the standard
        directories to name the runner that restarts the app, with its C(Restart=) and C(WatchdogSec=).
      - When unset, only the standard directories (C(/etc/systemd/system), C(/run/systemd/system),
        C(/lib/systemd/system), C(/usr/lib/systemd/system)).
    type: path
  healthz_path:
    description: Health endpoint (variable C(doctor_healthz_path)).
    type: str
    default: /healthz
  boot_timeout:
    description: Seconds the dry import and the spare-port preload boot may take (variable C(doctor_boot_timeout)).
    type: int
    default: 30
  stability_window:
    description:
      - A service whose youngest gunicorn process is younger than this many seconds has C(/healthz)
        sampled until that process is this old (variable C(doctor_stability_window)).
      - Older services are sampled once.
    type: int
    default: 15
  preload_boot:
    description:
      - When to start C(gunicorn --preload -k sync) on a free loopback port to see the app boot
        (variable C(doctor_preload_boot)). This runs the app's code, as described in the notes.
      - C(auto) does it only when C(/healthz) is not a stable 200. C(never) boots the app on no port, with no
        worker class (the eventlet layer's C(-k eventlet) boot included); the report says the check was turned off.
    type: str
    choices: [auto, always, never]
    default: auto
  dry_import:
    description:
      - Import the app in its own interpreter and GET the health path through Flask's test client
        (the runbook's dry import; variable C(doctor_dry_import)). This runs the app's code, as described in the notes.
      - C(false) imports nothing; the report says the check was turned off. With I(preload_boot=never) too,
        diagnosis runs none of the app's code.
      - A settled service (every process older than the stability window, not eventlet) whose /healthz answers a stable
        200, whose log shows no worker in trouble since its master started and whose source files are older than its
        workers is not imported again (its workers imported that code and serve it); the check says C(not needed).
    type: bool
    default: true
  worker_class:
    description:
      - The worker class the service should run (variable C(doctor_worker_class)).
      - C(auto) checks eventlet only when the running service or its runner configuration uses it.
    type: str
    choices: [auto, sync, eventlet, gthread, gevent]
    default: auto
  voice_checks:
    description: Run the voice layer (TwiML, status callback, Twilio WebSocket) (variable C(doctor_voice_checks)).
    type: bool
    default: true
  voice_pace:
    description:
      - How fast the voice layer's simulated call sends its one second of audio, 50 media frames of 20 ms
        (variable C(doctor_voice_pace)).
      - C(1) sends a frame every 20 ms, at real time as Twilio does; C(N) every 20/N ms, so the call takes 1/N s.
        The frames, their chunk numbers and timestamps and every check stay the same.
      - Faster than real time misses what only the call's length shows, e.g. an app that closes the stream after
        some hundreds of milliseconds; an app that has sent no audio back yet is still heard until the call's
        real-time end (one second). The playbooks use C(4), the diagnose role's default for C(doctor_voice_pace).
      - From C(1) to C(20).
    type: raw
    default: 1.0
  public_base_url:
    description:
      - Public URL of the service, e.g. C(https://voice.example.com) (variable C(doctor_public_base_url)).
      - Defaults to C(PUBLIC_BASE_URL) from the service environment.
    type: str
  incoming_call_path:
    description: The TwiML webhook (variable C(doctor_incoming_call_path)).
    type: str
    default: /incoming_call
  stream_status_path:
    description: The stream status callback (variable C(doctor_stream_status_path)).
    type: str
    default: /stream_status
  ws_path:
    description: The Twilio media-stream WebSocket when the TwiML's C(<Stream url>) names no path on this app (variable
      C(doctor_ws_path)); otherwise that URL's path is probed.
    type: str
    default: /ws/twilio-media
  twilio_auth_token:
    description:
      - Twilio auth token, to sign the test webhook requests with C(X-Twilio-Signature)
        (variable C(doctor_twilio_auth_token)). Never printed.
    type: str
  gcp_credentials_env:
    description:
      - Name of an environment variable of the service that holds the Google credentials JSON itself,
        for services that do not use a C(GOOGLE_APPLICATION_CREDENTIALS) file (variable C(doctor_gcp_credentials_env)).
    type: str
requirements:
  - psutil
notes:
  - Read-only on the service; it is observed, never signalled or restarted.
  - Diagnosis runs the app's own code. The dry import imports the app (everything its modules do at import
    runs); the spare-port boot starts it with C(gunicorn --preload) on a free loopback port. Both run as the
    service's user and group - the running master's (its workers' when gunicorn C(--user) drops them), else the
    C(User=)/C(Group=) of the systemd unit or the C(user=) of the supervisord program that runs the app, else
    the owner of I(chdir) - never as the Ansible user when that is someone else. When the owner of I(chdir) is
    root and nothing names another user, they run as root, as the service would. A prober that is not root runs
    them as itself. The boot layer's checks name the user and where it came from.
  - They get the service's own environment (the running master's, else its runner's and I(env_file)) without
    C(SSH_*), C(SUDO_*), C(ANSIBLE_*) or C(GUNICORN_CMD_ARGS), with a private temporary C(HOME) and C(TMPDIR)
    removed afterwards. The spare-port boot loads its own empty gunicorn configuration and pid file, never the
    app's C(gunicorn.conf.py) (its hooks, C(daemon), C(pidfile)).
  - Each runs in a session of its own, bounded by I(boot_timeout); at the end the whole session is killed,
    with any process it started that left the session but kept its environment.
  - I(dry_import=false) and I(preload_boot=never) turn both off.
seealso:
  - module: sre.gunicorn_doctor.probe
'''
