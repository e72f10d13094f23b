# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The voice layer of the verdict: facts['voice'] -> checks and causes (see verdict.Layer)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def judge(facts, layer):
    """Add the voice layer's checks and causes to `layer`."""
    if facts.get('voice') is None:
        layer.check('voice checks', 'skip', 'not probed yet: this layer comes with a later release of the collection')
        return
