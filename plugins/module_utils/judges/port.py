# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The port layer: where PORT comes from and whether it is a port (facts['port'])."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared


def judge(facts, layer):
    port = facts['port']
    if port['source'] == 'default':
        layer.check('port resolved', 'warn', 'PORT is set nowhere (doctor_port, the master environment, env file, '
                    'systemd unit, supervisord program): using %d' % port['port'])
        layer.cause('port_unset', ['PORT is set in none of: doctor_port, a running master\'s environment, %s, '
                                   'systemd units, supervisord programs' % (facts['inputs']['env_file'] or 'no env file'),
                                   'every check below uses the runbook default %d' % port['port']])
    elif not port['valid']:
        layer.check('port resolved', 'fail', 'PORT=%r from %s is not a port number' % (port['raw'], port['source']))
        evidence = ['PORT=%r in %s' % (port['raw'], port['source'])]
        evidence += [e['line'] for e in shared.last_run_events(facts) if e['event'] == 'invalid_port'][-2:]
        evidence += ['every check below uses the runbook default %d' % port['port']]
        layer.cause('port_invalid', evidence)
    elif port.get('inferred'):
        # No PORT anywhere, but the evidence shows the service's port: used instead of the runbook default.
        layer.check('port resolved', 'pass', '%d from %s (PORT itself is set nowhere: doctor_port, a running master\'s '
                    'environment, the env file, systemd units and supervisord programs say nothing)'
                    % (port['port'], port['source']))
    else:
        layer.check('port resolved', 'pass', '%d from %s' % (port['port'], port['source']))
    if port.get('disagree'):
        layer.check('port sources agree', 'pass', 'note: the sources disagree, the first wins: ' + '; '.join(
            '%s=%s' % (c['source'], c['value']) for c in port['candidates']))
