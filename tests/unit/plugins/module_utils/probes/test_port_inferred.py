"""The port layer's evidence when nothing sets PORT (issue 13 point 3): the last master generation of the log."""

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import port as port_probe


def gen(pid, listening):
    return {'pid': pid, 'listening': listening}


def test_the_last_tcp_listener_of_the_log_is_the_port():
    log = {'path': '/var/log/app/gunicorn.log',
           'generations': [gen(10, 'http://0.0.0.0:8123'), gen(11, 'http://[::]:9001'), gen(12, 'unix:/run/app.sock')]}
    assert port_probe._log_port(log) == (9001, '[::]:9001', log['generations'][1])
    found = port_probe.inferred_candidates(None, {'masters': [], 'strays': []}, dict(log, generations=log['generations'][:2]))
    assert found == [{'source': 'the last master in the log /var/log/app/gunicorn.log (pid 11, listening on '
                      '[::]:9001)', 'value': '9001', 'inferred': True}]


def test_no_tcp_listener_in_the_log_says_nothing():
    assert port_probe._log_port({'generations': [gen(12, 'unix:/run/app.sock'), gen(13, None)]}) == (None, None, None)
    assert port_probe._log_port(None) == (None, None, None)


def test_explicit_sources_come_first_and_inferred_only_when_none():
    asked = []

    def inferred():
        asked.append(1)
        return [{'source': 'front door nginx', 'value': '8080', 'inferred': True}]
    facts = port_probe.collect('9000', None, None, [], 'x:app', '/nonexistent', inferred=inferred)
    assert (facts['port'], facts['source'], facts['inferred'], asked) == (9000, 'doctor_port', False, [])
    facts = port_probe.collect(None, {}, '/srv/app/.env', [], 'x:app', '/nonexistent', inferred=inferred)
    assert (facts['port'], facts['source'], facts['inferred']) == (8080, 'front door nginx', True)
