# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of every output: private keys, tokens and passwords in any string of a result.

Runs where facts are collected (the modules' return paths on the host) and again over every report on
the controller. Only values go: names, paths, pids, ports and ordinary log text stay readable, so
`TWILIO_AUTH_TOKEN=<redacted>` still tells which variable was set."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from urllib.parse import parse_qsl, urlsplit

MARK = '<redacted>'

# Words that make a name (an environment variable, an option, a JSON key, a header) a secret's name.
# `key` only as a separate part (SECRET_KEY, api-key, private_key_id), never a WebSocket handshake key
# (a public nonce in our remedies), `pwd` only as MYSQL_PWD and the like (PWD alone is the cwd).
SECRET_WORDS = (r'(?:token|secret|passw(?:or)?d|passphrase|api[_-]?key|auth|credential|private[_-]?key'
                r'|(?<!websocket)[_-]key(?![a-z])|[_-]pwd(?![a-z]))')
# Bounded on both sides (no real variable name is longer): a hostile run of `token_token_...` in a log
# line costs linear time, not quadratic.
NAME = r'[\w.-]{0,64}' + SECRET_WORDS + r'[\w.-]{0,64}'
SECRET_KEY = re.compile(r'(?i)^' + NAME + r'$')                 # a dict key whose string value is a secret
SECRET_FLAG = re.compile(r'(?i)^--?' + NAME + r'$')             # an argv option whose next item is a secret

# A value after a secret's name: quoted (also JSON-escaped \"...\" inside a logged JSON text), else bare up
# to a separator; a quote that never closes still loses what follows it.
VALUE = (r'(?:"(?:[^"\\\r\n]|\\.)*"'
         r"|'[^'\r\n]*'"
         r'|\\"(?:[^"\\\r\n]|\\[^"])*\\"'
         r'|(?!' + MARK + r')\\?["\']?[^\s,;&"\'\\]+)')
# A credential standing after a plain word (`token VALUE`): it holds a digit or is long. English after
# "token" ("the token the app validates with") stays.
CREDENTIAL = r'(?![/<])(?:(?=[\w.~+/=-]*\d)[\w.~+/=-]{8,}|[\w.~+/=-]{20,})'


def _keep_quotes(match):
    """NAME=<redacted>, keeping the quotes the value had (JSON stays JSON)."""
    value = match.group(3)
    for quote in ('\\"', '"', "'"):
        if value.startswith(quote):
            closed = len(value) > len(quote) and value.endswith(quote)
            return match.group(1) + match.group(2) + quote + MARK + (quote if closed else '')
    return match.group(1) + match.group(2) + MARK


# One table, applied in order to every string. Each entry: pattern, replacement, why.
PATTERNS = (
    # A PEM private key (a service-account JSON, a TLS key in a traceback), to its END line or the text's end
    # when the output was cut inside it. Certificates are public and stay.
    (re.compile(r'-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)', re.S),
     '<redacted private key>'),
    # `Authorization: Bearer xyz`, `Proxy-Authorization: Basic ...`: the credential, not only the scheme word.
    (re.compile(r'(?i)\b((?:proxy-)?authorization["\']?\s*[:=]\s*["\']?)(?:(?:bearer|basic|token|digest)\s+)?'
                r'(?!' + MARK + r')[^\s,;"\']+'),
     r'\1' + MARK),
    # `Cookie:` / `Set-Cookie:` headers carry session cookies: a logged session is a login.
    (re.compile(r'(?i)\b((?:set-)?cookie["\']?\s*:\s*)(?!' + MARK + r')[^\r\n"\']+'), r'\1' + MARK),
    # Passwords in URLs of any scheme: postgresql://app:PW@db, redis://:PW@cache, https://AC..:TOKEN@api.
    # The user stays (who connects is evidence), the password goes; `/` may be in an unencoded password.
    (re.compile(r'(?i)\b([a-z][a-z0-9+.-]{0,30}://[^\s/@:\'"<>]{0,256}):[^\s@\'"<>]{0,256}@'), r'\1:' + MARK + '@'),
    # The same URL cut off inside its password (a command line shortened to fit a line): `user:` then no `@`
    # to the end of the text, and not a port (http://0.0.0.0:8123 and http://[::1]:8123 stay).
    (re.compile(r'(?i)\b([a-z][a-z0-9+.-]{0,30}://[^\s/@:\'"<>\[\]]{0,256}):(?!\d*(?:/|$)|' + MARK + r')[^\s@/\'"<>]+$'),
     r'\1:' + MARK),
    # Twilio credentials as a pair, `curl -u AC<sid>:<auth token>` or an API key `SK<sid>:<secret>`:
    # the SID names the account, the part after the colon is the secret.
    (re.compile(r'\b((?:AC|SK)[0-9a-fA-F]{32}):(?!' + MARK + r')[^\s@/"\',;]+'), r'\1:' + MARK),
    # Secrets recognisable by their own shape, wherever they stand: Stripe, OpenAI, GitHub, Slack and
    # Google API keys, and JSON Web Tokens (a bearer credential in a query string or a log line).
    # Each starts a run of its characters only, so a run like `sk-sk-sk-...` is scanned once.
    (re.compile(r'(?<![\w-])(?:[sr]k_(?:live|test)_[0-9A-Za-z]{10,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}'
                r'|github_pat_\w{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}'
                r'|(?<![\w.-])eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*)'),
     MARK),
    # An option and its value on a command line: `--db-password hunter2`, `--auth-token abc` (argv joined).
    (re.compile(r'(?i)(?<!\S)(--?' + NAME + r')(\s+)(?!-)(' + VALUE + r')'), _keep_quotes),
    # `token VALUE`, `Bearer VALUE`, `password VALUE` in a log line or a client library's message.
    (re.compile(r'(?i)(?<![a-z0-9])(token|bearer|passw(?:or)?d|secret)(\s+)(' + CREDENTIAL + r')'), r'\1\2' + MARK),
    # NAME=value, NAME: value, "name": "value", NAME='value', --name=value for secret-looking names:
    # *_TOKEN, *_SECRET, *PASSWORD*, *_KEY, private_key(_id), api-key, auth...
    (re.compile(r'(?i)(?<![\w.-])(' + NAME + r')(\\?["\']?\s*[=:]\s*)(' + VALUE + r')'), _keep_quotes),
)


def redact_text(text):
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value):
    """A copy of value (str, list, dict, nested) with secrets replaced."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return dict((k, MARK if isinstance(v, str) and v and isinstance(k, str) and SECRET_KEY.match(k)
                     else redact(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        # An argv: ['--password', 'hunter2'] -> the item after a secret's option goes.
        return [MARK if i and isinstance(v, str) and isinstance(value[i - 1], str) and SECRET_FLAG.match(value[i - 1])
                and not v.startswith('-') else redact(v) for i, v in enumerate(value)]
    return value


def url_secrets(url):
    """The secret parts of a URL given as an input (a password in its userinfo, a query value under a secret's
    name: `?token=...`): a module adds them to `no_log_values`, so Ansible masks them in every output, the
    `invocation` that -vvv prints included, while the rest of the URL stays readable."""
    if not isinstance(url, str) or not url:
        return set()
    try:
        parts = urlsplit(url)
        found = set([parts.password]) if parts.password else set()
        found.update(value for name, value in parse_qsl(parts.query) if value and SECRET_KEY.match(name))
    except ValueError:   # not a URL (the module's own validation says so in one line)
        return set()
    return found
