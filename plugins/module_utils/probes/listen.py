# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""listen layer: who LISTENs on the expected port, and where the app listens instead
(the `ss -ltnp` of the runbook, read through psutil)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket


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


def collect(psutil, port, process_facts):
    """-> facts: listeners on `port`, and every socket the app's processes listen on."""
    roles = {}
    for master in process_facts['masters']:
        roles[master['pid']] = 'master'
        for worker in master['workers']:
            roles[worker['pid']] = 'worker of %d' % master['pid']
    for stray in process_facts['strays']:
        roles[stray['pid']] = 'stray (%s)' % stray['kind']
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
    return {'port': port, 'on_port': on_port, 'app_sockets': app_sockets}
