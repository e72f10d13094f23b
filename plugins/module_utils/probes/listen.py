# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""listen layer: who LISTENs on the expected port, and where the app listens instead
(the `ss -ltnp` of the runbook, read through psutil); for an app bound to a unix socket, whether one of its
processes accepts on that socket (`ss -lxp`, read from /proc/net/unix and the processes' fds) and the front
door that holds $PORT (front_door.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import socket
import stat

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import front_door

UNIX_TABLE = '/proc/net/unix'
UNIX_TABLE_MAX = 16 << 20
ACCEPTING = 0x10000     # __SO_ACCEPTCON in the Flags column of /proc/net/unix: the socket listens
FDS_MAX = 1 << 16       # fds looked at per process


def listening_sockets(psutil):
    """Every TCP LISTEN socket -> [dict(pid, name, family, address, port)]; pid None when not ours to see."""
    sockets = []
    names = {}
    for conn in psutil.net_connections(kind='tcp'):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        name = None
        if conn.pid:
            if conn.pid not in names:
                try:
                    names[conn.pid] = psutil.Process(conn.pid).name()
                except Exception:  # vanished in between
                    names[conn.pid] = None
            name = names[conn.pid]
        sockets.append({
            'pid': conn.pid,
            'name': name,
            'family': 'inet6' if conn.family == socket.AF_INET6 else 'inet',
            'address': conn.laddr[0],
            'port': conn.laddr[1],
        })
    return sorted(sockets, key=lambda s: (s['port'], s['address'], s['pid'] or 0))


def app_roles(process_facts):
    """pid -> what it is to the app: master, worker of M, stray (kind)."""
    roles = {}
    for master in process_facts['masters']:
        roles[master['pid']] = 'master'
        for worker in master['workers']:
            roles[worker['pid']] = 'worker of %d' % master['pid']
    for stray in process_facts['strays']:
        roles[stray['pid']] = 'stray (%s)' % stray['kind']
    return roles


def collect(psutil, port, process_facts, log=None):
    """-> facts: listeners on `port`, every socket the app's processes listen on, and for a unix-socket bind
    the app's unix sockets and the front door on `port`."""
    roles = app_roles(process_facts)
    # psutil names one pid per socket; a worker shares its master's listening socket, so ask each
    # master which sockets are its own.
    owned = {}
    for master in process_facts['masters']:
        try:
            proc = psutil.Process(master['pid'])
            conns = getattr(proc, 'net_connections', getattr(proc, 'connections', None))(kind='tcp')  # psutil < 6: connections
        except Exception:  # vanished, or not ours to read
            conns = []
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr:
                owned[(conn.laddr[0], conn.laddr[1])] = master['pid']
    on_port, app_sockets = [], []
    for sock in listening_sockets(psutil):
        if (sock['address'], sock['port']) in owned:
            sock['pid'] = owned[(sock['address'], sock['port'])]
        role = roles.get(sock['pid'])
        if sock['port'] == port:
            on_port.append(dict(sock, app_role=role))
        if role is not None:
            app_sockets.append(dict(sock, app_role=role))
    facts = {'port': port, 'on_port': on_port, 'app_sockets': app_sockets}
    paths = expected_unix_paths(process_facts, log)
    if any(s['app_role'] for s in on_port):
        return facts
    door = front_door.find(psutil, port, [s for s in on_port if not s['app_role']])
    for path in (door or {}).get('unix_upstreams') or []:
        paths.setdefault(path, []).append('the front door\'s config %s' % door['config'])
    if paths:
        facts['unix'] = unix_sockets(paths, roles)
        facts['front_door'] = door
    elif door and door.get('tcp_upstreams'):
        backend = tcp_backend(door['tcp_upstreams'], app_sockets, process_facts, log)
        if backend:
            facts.update(tcp_backend=backend, front_door=door)
    return facts


def tcp_backend(ports, app_sockets, process_facts, log):
    """The loopback TCP port behind the front door (`ports`: those its config forwards to) where the app listens, or
    is bound to (a master's bind, else the log's last "Listening at") with nothing listening: dict(address, port,
    app (pid and role of each listener), sources), or None when the door forwards to no port of the app."""
    reachable = [s for s in app_sockets if s['port'] in ports and s['address'] in ('0.0.0.0', '::', '127.0.0.1', '::1')]
    if reachable:
        sock = reachable[0]
        return {'address': '127.0.0.1' if ':' not in sock['address'] else '::1', 'port': sock['port'],
                'app': [{'pid': s['pid'], 'app_role': s['app_role']} for s in reachable if s['port'] == sock['port']],
                'sources': ['the front door\'s config forwards to port %d' % sock['port']]}
    said = [(b, 'the bind of master %d' % m['pid']) for m in process_facts['masters'] for b in gunicorn.binds_of(m)]
    said += [(e.get('url') or '', 'the log %s: %s' % (log['path'], e['line'])) for e in reversed((log or {}).get('events') or [])
             if e['event'] == 'listening'][:1]
    for bind, source in said:
        port = gunicorn.tcp_port(bind)
        if port in ports:
            return {'address': '127.0.0.1', 'port': port, 'app': [], 'sources': [source]}
    return None


def expected_unix_paths(process_facts, log):
    """Unix sockets the app is bound to -> {path: [where that is said]}: each master's binds
    (gunicorn.binds_of), else the last "Listening at: unix:..." of the log."""
    paths = {}
    for master in process_facts['masters']:
        for bind in gunicorn.binds_of(master):
            if gunicorn.unix_path(bind):
                paths.setdefault(gunicorn.unix_path(bind), []).append('the bind of master %d' % master['pid'])
    if not paths and log:
        said = [e for e in log.get('events') or [] if e['event'] == 'listening' and gunicorn.unix_path(e.get('url'))]
        if said:
            paths[gunicorn.unix_path(said[-1]['url'])] = ['the log %s: %s' % (log['path'], said[-1]['line'])]
    return paths


def unix_listeners(table):
    """The text of /proc/net/unix -> {path: set(inode)} of the sockets bound to a path that accept (listen)."""
    found = {}
    for line in table.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) < 8 or not fields[7].startswith('/'):
            continue   # unbound, or abstract (@name)
        try:
            flags, inode = int(fields[3], 16), int(fields[6])
        except ValueError:
            continue
        if flags & ACCEPTING:
            found.setdefault(fields[7], set()).add(inode)
    return found


def socket_inodes(pid):
    """The inodes of the sockets `pid` holds open (its /proc/PID/fd links `socket:[N]`)."""
    inodes = set()
    try:
        names = os.listdir('/proc/%d/fd' % pid)[:FDS_MAX]
    except OSError:   # gone, or not ours to read
        return inodes
    for name in names:
        try:
            target = os.readlink('/proc/%d/fd/%s' % (pid, name))
        except OSError:
            continue
        if target.startswith('socket:[') and target.endswith(']') and target[8:-1].isdigit():
            inodes.add(int(target[8:-1]))
    return inodes


def file_kind(path):
    """'socket', 'missing', or what else is there (a socket's file may be gone while it still listens)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return 'missing'
    if stat.S_ISSOCK(mode):
        return 'socket'
    return 'a regular file' if stat.S_ISREG(mode) else safe_read.kind(mode)


def unix_sockets(paths, roles):
    """{path: [sources]} -> [dict(path, sources, file, accepting, app)]: whether anything accepts on each path
    (a listening socket bound to it) and which of the app's processes hold that socket (master first)."""
    read = safe_read.read_text(UNIX_TABLE, UNIX_TABLE_MAX)
    listeners = unix_listeners(read.data or '')
    held = {}
    for pid in sorted(roles, key=lambda p: (roles[p] != 'master', p)):
        for inode in socket_inodes(pid):
            held.setdefault(inode, []).append({'pid': pid, 'app_role': roles[pid]})
    found = []
    for path in sorted(paths):
        inodes = listeners.get(path, set())
        app = [h for inode in sorted(inodes) for h in held.get(inode, [])]
        found.append({'path': path, 'sources': paths[path], 'file': file_kind(path), 'accepting': bool(inodes),
                      'app': app[:8], 'table_error': read.error})
    return found


def backend(listen_facts):
    """Where /healthz is sampled behind a front door besides $PORT: the app's unix socket (a path), its loopback TCP
    port (an int), or None."""
    tcp = (listen_facts or {}).get('tcp_backend')
    return tcp['port'] if tcp else backend_socket(listen_facts)


def backend_socket(listen_facts):
    """The unix socket to sample /healthz over: the first the app accepts on, else the first it is bound to (a
    stale one refuses: that is the evidence); None when the app is not behind a front door on a unix socket."""
    paths = (listen_facts or {}).get('unix') or []
    accepted = [p['path'] for p in paths if p['app']]
    return (accepted or [p['path'] for p in paths] or [None])[0]
