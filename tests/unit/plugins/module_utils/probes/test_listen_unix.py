"""The listen probe's unix-socket facts, read from this host for real: /proc/net/unix, our own fds, real sockets
in tmp_path; and the front door's config (nginx syntax, includes, comments) read from real files."""

import os
import socket

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import front_door, listen


def test_a_listening_socket_is_seen_accepting_and_held_by_its_process(tmp_path):
    live, stale = str(tmp_path / "live.sock"), str(tmp_path / "stale.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(live)
    server.listen(4)
    gone = socket.socket(socket.AF_UNIX)
    gone.bind(stale)
    gone.close()        # its file stays: a stale socket, as gunicorn leaves it when SIGKILLed
    try:
        with open(listen.UNIX_TABLE) as f:
            listeners = listen.unix_listeners(f.read())
        assert live in listeners and stale not in listeners
        assert listeners[live] & listen.socket_inodes(os.getpid())
        found = listen.unix_sockets({live: ["test"], stale: ["test"], str(tmp_path / "none.sock"): ["test"]},
                                    {os.getpid(): "master"})
        by_path = dict((f["path"], f) for f in found)
        assert by_path[live]["accepting"] and by_path[live]["app"] == [{"pid": os.getpid(), "app_role": "master"}]
        assert (by_path[stale]["file"], by_path[stale]["accepting"], by_path[stale]["app"]) == ("socket", False, [])
        assert by_path[str(tmp_path / "none.sock")]["file"] == "missing"
        assert listen.backend_socket({"unix": found}) == live
    finally:
        server.close()


def test_the_front_doors_config_gives_the_unix_upstreams_with_includes_and_no_comments(tmp_path):
    (tmp_path / "sites").mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text("http {\n  include sites/*.conf;\n  # proxy_pass http://unix:/run/commented.sock;\n}\n")
    (tmp_path / "sites" / "app.conf").write_text(
        "upstream app { server unix:/run/app/app.sock fail_timeout=0; }\n"
        "server { location /ws { proxy_pass http://unix:/run/app/ws.sock:/ws; }\n"
        "  proxy_set_header Authorization \"Bearer not-kept\"; }\n")
    paths, files, error, ports = front_door.read_config(str(main))
    assert (paths, files, error, ports) == (["/run/app/app.sock", "/run/app/ws.sock"], 2, None, [])


def test_the_front_doors_config_gives_the_loopback_ports_it_forwards_to_never_its_own_or_a_remote_one(tmp_path):
    main = tmp_path / "nginx.conf"
    main.write_text("http {\n  upstream app { server 127.0.0.1:8000 fail_timeout=0; server localhost:8001; }\n"
                    "  server { listen 127.0.0.1:8080; listen [::1]:8443;\n"
                    "    location / { proxy_pass http://app; }\n"
                    "    location /ws { proxy_pass http://[::1]:8002/ws; }\n"
                    "    location /old { proxy_pass http://10.0.0.5:9000; }  # proxy_pass http://127.0.0.1:7000;\n"
                    "  }\n}\n")
    assert front_door.read_config(str(main))[3] == [8000, 8001, 8002]
    haproxy = tmp_path / "haproxy.cfg"
    haproxy.write_text("frontend web\n  bind 127.0.0.1:8080\nbackend app\n  server app1 127.0.0.1:8000 check\n")
    assert front_door.read_config(str(haproxy))[3] == [8000]


def test_the_config_path_of_nginx_from_its_title_and_its_default():
    title = ["nginx: master process /usr/sbin/nginx -p /srv/ngx -c conf/nginx.conf"]
    assert front_door.config_path("nginx", title) == "/srv/ngx/conf/nginx.conf"
    assert front_door.config_path("nginx", ["nginx: master process /usr/sbin/nginx"]) == "/etc/nginx/nginx.conf"
    assert front_door.config_path("haproxy", ["haproxy", "-f", "/etc/haproxy/haproxy.cfg"]) == "/etc/haproxy/haproxy.cfg"
    assert front_door.config_path("socat", ["socat", "TCP-LISTEN:80", "UNIX:/run/a.sock"]) is None
