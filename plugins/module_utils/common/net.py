# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address helpers shared by the listen layer (target side) and the external layer (controller side)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress


def is_loopback(address):
    """127.0.0.0/8, ::1, an IPv4-mapped ::ffff:127.x.y.z, a scoped `::1%lo`, or `localhost`: reachable from
    this host only."""
    text = (address or '').split('%')[0]
    if text == 'localhost':
        return True
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return (getattr(ip, 'ipv4_mapped', None) or ip).is_loopback
