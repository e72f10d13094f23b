"""A real TLS-terminating reverse proxy for the external-layer tests: nginx from Debian's packages
in front of a gunicorn service, with a CA and a server certificate made by the test.

Loopback only: nginx listens on 127.0.0.1:<free port>; the certificate names `voice.test` and
IP:127.0.0.1, so https://127.0.0.1:<port> verifies against the test CA without touching
/etc/hosts or any resolver. nginx runs as a non-daemon child with its own prefix, config, pid file
and logs in the test's tmp directory, and is stopped by its PID (workers too, by theirs).
"""

import datetime
import grp
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import time

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import debian_packages
from gunicorn_service import stop_popen

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary():
    """nginx's path; installed from Debian's packages when missing (debian_packages: as root, no daemon started)."""
    if not _found():
        debian_packages.ensure(("nginx-light",), ("/usr/sbin/nginx",))
    found = _found()
    if not found:
        raise RuntimeError("nginx-light is installed but no nginx binary is found in %s" % (NGINX_CANDIDATES,))
    return found


def _found():
    return shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None)


# --- the PKI -------------------------------------------------------------------------------------------
def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gunicorn_doctor tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return str(path)


def make_pki(directory, dns_names=("voice.test",), ips=("127.0.0.1",)):
    """A test CA and a server certificate it signed -> dict(ca, cert, key, names) of PEM file paths."""
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("gunicorn_doctor test CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(dns_names[0])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {
        "ca": _write(os.path.join(directory, "ca.pem"), ca_cert.public_bytes(pem)),
        "cert": _write(os.path.join(directory, "server.pem"), cert.public_bytes(pem)),
        "key": _write(os.path.join(directory, "server.key"), key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), mode=0o600),
        "names": list(dns_names) + list(ips),
    }


# --- nginx ---------------------------------------------------------------------------------------------
CONF = """\
daemon off;
master_process on;
worker_processes 1;
user {user} {group};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {server_name};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
{upgrade}            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_connect_timeout 3s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""
UPGRADE = """\
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
"""


class NginxTLSProxy:
    """nginx terminating TLS on 127.0.0.1:port and proxying https and wss to 127.0.0.1:upstream.

    websocket=False leaves out the Upgrade/Connection headers (a proxy that breaks WebSockets).
    """

    def __init__(self, prefix, pki, port, upstream, websocket=True, server_name="voice.test"):
        self.prefix = str(prefix)
        self.pki = pki
        self.port = port
        self.upstream = upstream
        self.websocket = websocket
        self.server_name = server_name
        self.proc = None
        self.children = []

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def url(self, host="127.0.0.1"):
        return "https://%s:%d" % (host, self.port)

    def config(self):
        return CONF.format(prefix=self.prefix, port=self.port, upstream=self.upstream, cert=self.pki["cert"],
                           key=self.pki["key"], server_name=self.server_name,
                           upgrade=UPGRADE if self.websocket else "",
                           user=pwd.getpwuid(os.geteuid()).pw_name, group=grp.getgrgid(os.getegid()).gr_name)

    def error_log(self):
        try:
            with open(os.path.join(self.prefix, "error.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self, timeout=15.0):
        binary = nginx_binary()
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        with open(os.path.join(self.prefix, "console.log"), "ab") as console:
            self.proc = subprocess.Popen([binary, "-p", self.prefix, "-c", conf, "-e", os.path.join(self.prefix, "error.log")],
                                         stdin=subprocess.DEVNULL, stdout=console, stderr=console)
        self.wait_accepting(timeout)
        try:
            self.children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        return self

    def wait_accepting(self, timeout):
        """Until nginx's port accepts a connection (or nginx exits: then its error log says why)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited with %s:\n%s" % (self.proc.returncode, self.error_log()[-3000:]))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("nginx did not accept on 127.0.0.1:%d within %s s:\n%s" % (
                        self.port, timeout, self.error_log()[-3000:]))
                time.sleep(0.05)

    def stop(self, grace=5.0):
        """SIGTERM (fast shutdown) to the master we started, then SIGKILL; its workers by their PIDs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.children = psutil.Process(self.pid).children(recursive=True) or self.children
            except psutil.NoSuchProcess:
                pass
        stop_popen(self.proc, self.children, grace)


PLAIN_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user {user} {group};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream app {{ server {upstream} fail_timeout=0; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
{upgrade}            proxy_set_header Host $http_host;
            proxy_connect_timeout 3s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


class NginxUnixProxy(NginxTLSProxy):
    """nginx on plain http 127.0.0.1:port in front of gunicorn bound to unix:socket (the usual deployment)."""

    def __init__(self, prefix, port, socket_path):
        NginxTLSProxy.__init__(self, prefix, None, port, None)
        self.socket_path = str(socket_path)

    def url(self, host="127.0.0.1"):
        return "http://%s:%d" % (host, self.port)

    def upstream_server(self):
        return "unix:" + self.socket_path

    def config(self):
        return PLAIN_CONF.format(prefix=self.prefix, port=self.port, upstream=self.upstream_server(), upgrade=UPGRADE,
                                 user=pwd.getpwuid(os.geteuid()).pw_name, group=grp.getgrgid(os.getegid()).gr_name)


class NginxTcpProxy(NginxUnixProxy):
    """nginx on plain http 127.0.0.1:port in front of gunicorn bound to 127.0.0.1:backend (proxy_pass over TCP)."""

    def __init__(self, prefix, port, backend):
        NginxUnixProxy.__init__(self, prefix, port, "")
        self.backend = backend

    def upstream_server(self):
        return "127.0.0.1:%d" % self.backend
