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
        (variable C(doctor_preload_boot)).
      - C(auto) does it only when C(/healthz) is not a stable 200.
    type: str
    choices: [auto, always, never]
    default: auto
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
        real-time end (one second). C(playbooks/audit.yml) and C(playbooks/stabilize.yml) use C(4).
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
    description: The Twilio media-stream WebSocket (variable C(doctor_ws_path)).
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
  - Read-only. The only process started is the spare-port boot (and the dry import), stopped by PID before
    the module returns.
seealso:
  - module: sre.gunicorn_doctor.probe
'''
