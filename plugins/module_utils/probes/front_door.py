# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""listen layer, behind a reverse proxy: the front door on $PORT (nginx or any proxy) and the unix sockets
its configuration forwards to.

Facts only. The front door is the process that holds $PORT when it is not the app; its configuration is read
when it is readable, bounded (at most CONFIG_FILES files of CONFIG_MAX bytes, includes followed), and only the
unix socket paths and the loopback TCP ports it names are kept: a proxy's configuration may hold secrets (an
Authorization header).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re
import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read

CONFIG_MAX = 1 << 20
CONFIG_FILES = 32
# Where a proxy is told its configuration file; nginx's default when it is not told.
CONFIG_OPTIONS = ('-c', '-f', '--config', '-conf')
NGINX_DEFAULT_CONF = '/etc/nginx/nginx.conf'
INCLUDE = re.compile(r'^\s*include\s+([^;#]+);', re.M)
# nginx `proxy_pass http://unix:/run/app.sock:/`, `server unix:/run/app.sock;`; haproxy `unix@/run/app.sock`.
UNIX_UPSTREAM = re.compile(r'unix[:@](/[^\s;:"\'|]+)')
COMMENT = re.compile(r'(^|\s)#.*$', re.M)
# nginx `proxy_pass http://127.0.0.1:8000;`, `server localhost:8000;`; haproxy `server app 127.0.0.1:8000 check`:
# a loopback address with a port, anywhere but in the proxy's own nginx `listen ...;` / haproxy `bind` statements.
LOOPBACK_UPSTREAM = re.compile(r'(?<![\w.\-])(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]):(\d{1,5})\b')
OWN_ADDRESS = re.compile(r'(?<![\w.\-])listen\s[^;]*;|^\s*bind\s.*$', re.M)


def _process(psutil, pid):
    """The proxy's master: a worker holding the socket (nginx workers share it) -> its parent of the same name."""
    try:
        proc = psutil.Process(pid)
        parent = proc.parent()
        if parent is not None and parent.pid != 1 and parent.name() == proc.name():
            proc = parent
        return proc.pid, proc.name(), proc.cmdline()
    except Exception:  # vanished, or not ours to read
        return pid, None, []


def _argv(cmdline):
    """nginx rewrites its title into one string ("nginx: master process /usr/sbin/nginx -c /x.conf"): split it."""
    if len(cmdline) == 1 and ' ' in cmdline[0]:
        try:
            return shlex.split(cmdline[0])
        except ValueError:
            return cmdline[0].split()
    return list(cmdline)


def config_path(name, cmdline):
    """The configuration file the proxy was started with (its -c / -f option; nginx's default), or None."""
    argv = _argv(cmdline)
    prefix = None
    for i, arg in enumerate(argv[:-1]):
        if arg == '-p':
            prefix = argv[i + 1]
    for i, arg in enumerate(argv[:-1]):
        if arg in CONFIG_OPTIONS:
            path = argv[i + 1]
            return path if os.path.isabs(path) or not prefix else os.path.join(prefix, path)
    if (name or '').startswith('nginx') or any(os.path.basename(a) == 'nginx' for a in argv[:3]):
        return NGINX_DEFAULT_CONF
    return None


def _tcp_ports(text):
    """The loopback ports a configuration forwards to (not the ones it listens on)."""
    return [int(port) for port in LOOPBACK_UPSTREAM.findall(OWN_ADDRESS.sub(' ', text)) if 0 < int(port) < 65536]


def read_config(path):
    """-> (unix socket paths the configuration names, files read, error or None, loopback TCP ports it forwards to).
    Includes are followed (globs, relative to the main file's directory), at most CONFIG_FILES files."""
    todo, seen, paths, error, ports = [path], [], [], None, []
    base = os.path.dirname(path)
    while todo and len(seen) < CONFIG_FILES:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.append(current)
        read = safe_read.read_text(current, CONFIG_MAX, follow=True)
        if read.data is None:
            error = error or '%s: %s' % (current, read.error)
            continue
        text = COMMENT.sub('', read.data)
        for found in UNIX_UPSTREAM.findall(text):
            if found not in paths:
                paths.append(found)
        ports += [port for port in _tcp_ports(text) if port not in ports]
        for pattern in INCLUDE.findall(text):
            pattern = pattern.strip().strip('"\'')
            pattern = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
            todo.extend(sorted(glob.glob(pattern))[:CONFIG_FILES])
    return paths, len(seen), error, ports


def find(psutil, port, holders):
    """The front door: the first holder of $PORT that is not the app (`holders`: listen sockets on $PORT without
    an app role) -> dict(pid, name, address, port, config, config_files, unix_upstreams, tcp_upstreams (loopback
    ports), config_error), or None."""
    if not holders:
        return None
    sock = holders[0]
    pid, name, cmdline = _process(psutil, sock['pid']) if sock['pid'] else (None, sock['name'], [])
    door = {'pid': pid, 'name': name or sock['name'], 'address': sock['address'], 'port': port, 'config': None,
            'config_files': 0, 'unix_upstreams': [], 'tcp_upstreams': [], 'config_error': None}
    path = config_path(door['name'], cmdline)
    if path:
        door['config'] = path
        door['unix_upstreams'], door['config_files'], door['config_error'], door['tcp_upstreams'] = read_config(path)
    return door
