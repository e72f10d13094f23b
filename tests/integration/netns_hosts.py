"""A small fleet made of Linux namespaces on this machine, reached over real SSH, for audit tests.

Each host is
  - a network namespace joined to a bridge in the root namespace: a private /24 made here (the
    bridge holds .1, host i holds .(10+i)); traffic stays between this machine's namespaces;
  - its own PID, UTS and mount namespaces (`unshare --pid --uts --mount --fork --mount-proc` inside
    the network namespace), so `ps`/`ss`/psutil on a host see only that host. PID 1 there is this
    file run as `init`: it reaps orphans and, on SIGTERM, stops everything in the host;
  - its own sshd (Debian's openssh-server): own host key, pidfile, log file, config; `StrictModes no`
    because the keys live under a temporary directory;
  - a plain login shell for SSH sessions: root's shell is /bin/sh in a passwd file bind-mounted
    over /etc/passwd *inside the host's mount namespace only*. sshd runs `$SHELL -c COMMAND`, and
    Debian's bash sources ~/.bashrc for commands run by sshd (SSH_SOURCE_BASHRC) - here that file
    runs `pyenv init`, which triples the time of every Ansible task. dash reads no start-up file;
  - its own gunicorn services, each with its own HOME (gunicorn 25's control socket lives in
    ~/.gunicorn/gunicorn.ctl: two masters of one user would share it).

Every process is started by this module and stopped by its PID; namespaces, the bridge and the
veth pairs are deleted at teardown. Needs root, `ip` (iproute2), `unshare`/`nsenter` (util-linux)
and sshd (`ensure_packages()` installs openssh-server with apt-get when missing).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import debian_packages

SSHD = "/usr/sbin/sshd"
PLAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def ensure_packages(packages=("openssh-server", "openssh-client"), binaries=(SSHD, "ssh", "ssh-keygen")):
    """Install Debian packages when one of `binaries` is missing (debian_packages: as root, no daemon started)."""
    debian_packages.ensure(packages, binaries)


def usable():
    """Why the testbed cannot run here, or None."""
    if sys.platform != "linux":
        return "Linux namespaces only"
    if os.geteuid() != 0:
        return "needs root (network namespaces, bind mounts)"
    for tool in ("ip", "unshare", "nsenter", "mount"):
        if not shutil.which(tool):
            return "%s is missing" % tool
    return None


def sh(*argv, check=True, **kwargs):
    return subprocess.run(list(argv), check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def free_subnet(second=None):
    """A 10.<second>.X.0/24 that no route or address of this machine overlaps; -> '10.222.X'. Each parallel test
    worker (pytest-xdist's gw0, gw1, ...) looks in its own 10.<222 + N>: two fleets made at once never pick the
    same subnet."""
    if second is None:
        second = 222 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    routes = sh("ip", "-4", "route", "show", "table", "all").stdout + sh("ip", "-4", "addr").stdout
    for third in range(7, 250):
        prefix = "10.%d.%d" % (second, third)
        if prefix + "." not in routes and "10.%d.0.0/16" % second not in routes:
            return prefix
    raise RuntimeError("no free 10.%d.X.0/24" % second)


class NetnsHost:
    """One host. `run()` and `spawn()` execute inside all its namespaces (through nsenter)."""

    def __init__(self, fleet, index, name):
        self.fleet = fleet
        self.index = index
        self.name = name
        self.dir = fleet.dir / name
        self.netns = "%s-%s" % (fleet.tag, name)
        self.veth = "%sh%d" % (fleet.tag, index)          # root-side end, on the bridge
        self.address = "%s.%d" % (fleet.prefix, 10 + index)
        self.unshare = None       # Popen of `ip netns exec ... unshare ...`
        self.init_pid = None      # PID 1 of the host, as the root namespace sees it
        self.sshd_pid = None      # root-namespace PIDs
        self.services = {}        # name -> root-namespace PID of a gunicorn master

    # --- life cycle -------------------------------------------------------------------------------
    def create(self):
        self.dir.mkdir(parents=True)
        (self.dir / "home").mkdir()
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh("ip", "link", "set", self.veth, "master", self.fleet.bridge, "up")
        sh("ip", "-n", self.netns, "addr", "add", "%s/24" % self.address, "dev", "eth0")
        sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        self._write_sshd_files()
        # PID 1 of the host: this file in `init` mode, inside new PID/UTS/mount namespaces.
        self.unshare = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--pid", "--uts", "--mount", "--fork", "--mount-proc",
             "--propagation", "private", sys.executable, os.path.abspath(__file__), "init", str(self.dir), self.name],
            stdin=subprocess.DEVNULL, stdout=open(self.dir / "init.log", "ab"), stderr=subprocess.STDOUT,
            env={"PATH": PLAIN_PATH, "HOME": str(self.dir / "home")})
        deadline = time.monotonic() + 10
        while self.init_pid is None:
            ready = (self.dir / "init.ready").exists()
            children = psutil.Process(self.unshare.pid).children() if self.unshare.poll() is None else []
            if ready and children:
                self.init_pid = children[0].pid
            elif self.unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("host %s did not start: %s" % (self.name, (self.dir / "init.log").read_text()))
            else:
                time.sleep(0.02)
        self.start_sshd()
        return self

    def destroy(self):
        """Stop the host by its init's PID (the kernel ends whatever is left in its PID namespace)."""
        if self.unshare is not None and self.unshare.poll() is None:
            if self.init_pid:
                try:
                    os.kill(self.init_pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.unshare.wait(timeout=10)
            except subprocess.TimeoutExpired:
                if self.init_pid:
                    try:
                        os.kill(self.init_pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.unshare.wait(timeout=10)
        sh("ip", "link", "del", self.veth, check=False)
        sh("ip", "netns", "del", self.netns, check=False)

    # --- running things inside the host -----------------------------------------------------------
    def nsenter(self, argv):
        return ["nsenter", "--target", str(self.init_pid), "--net", "--pid", "--mount", "--uts", "--"] + list(argv)

    def run(self, *argv, check=True, env=None, cwd=None, timeout=60):
        """Run a command inside the host and wait for it; -> CompletedProcess (text)."""
        return subprocess.run(self.nsenter(argv), check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env or self.env(), cwd=cwd, timeout=timeout)

    def env(self, **extra):
        return dict({"PATH": PLAIN_PATH, "HOME": str(self.dir / "home"), "LANG": "C.UTF-8"}, **extra)

    def spawn(self, argv, log, cwd="/", env=None):
        """Start a long-running process inside the host, detached (its parent becomes the host's
        init, like a daemon); -> its PID in the root namespace."""
        script = 'cd "$1" || exit 1; log=$2; shift 2; "$@" >>"$log" 2>&1 </dev/null & echo $!'
        done = self.run("/bin/sh", "-c", script, "spawn", str(cwd), str(log), *argv, env=env)
        return self.root_pid(int(done.stdout.split()[-1]))

    def root_pid(self, host_pid, timeout=5):
        """The root-namespace PID of the process whose PID inside the host is `host_pid`."""
        deadline = time.monotonic() + timeout
        while True:
            for proc in psutil.Process(self.init_pid).children(recursive=True):
                try:
                    with open("/proc/%d/status" % proc.pid) as f:
                        nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
                except (OSError, StopIteration):
                    continue
                if len(nspid) > 1 and int(nspid[-1]) == host_pid:
                    return proc.pid
            if time.monotonic() > deadline:
                raise RuntimeError("no process %d in host %s" % (host_pid, self.name))
            time.sleep(0.02)

    # --- sshd ---------------------------------------------------------------------------------------
    def _write_sshd_files(self):
        key = self.dir / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key))
        (self.dir / "sshd_config").write_text("\n".join([
            "ListenAddress %s" % self.address,
            "Port 22",
            "HostKey %s" % key,
            "PidFile %s" % (self.dir / "sshd.pid"),
            "AuthorizedKeysFile %s" % self.fleet.authorized_keys,
            "StrictModes no",            # the keys live under /tmp
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 100:30:200",    # forks: many sessions open at once
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        # Root's login shell inside this host only: /bin/sh reads no start-up file (no pyenv init).
        lines = []
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "root" and len(fields) == 7:
                fields[6] = "/bin/sh"
            lines.append(":".join(fields))
        (self.dir / "passwd").write_text("\n".join(lines) + "\n")

    def start_sshd(self, timeout=10):
        log = self.dir / "sshd.log"
        self.sshd_pid = self.spawn([SSHD, "-D", "-f", str(self.dir / "sshd_config"), "-E", str(log)], self.dir / "sshd.out")
        deadline = time.monotonic() + timeout
        while not self.ssh_port_open():
            if not psutil.pid_exists(self.sshd_pid) or time.monotonic() > deadline:
                raise RuntimeError("sshd on %s did not start:\n%s" % (self.name, log.read_text() if log.exists() else ""))
            time.sleep(0.02)

    def stop_sshd(self):
        """Make the host unreachable: its sshd stops (by PID); new connections are refused."""
        stop_pid(self.sshd_pid)
        self.sshd_pid = None

    def ssh_port_open(self):
        try:
            with socket.create_connection((self.address, 22), timeout=0.5):
                return True
        except OSError:
            return False

    # --- gunicorn -----------------------------------------------------------------------------------
    def start_gunicorn(self, app_dir, bind, env=None, name="app", python=sys.executable, log=None, wait=True):
        """gunicorn of the demo app inside the host, detached; -> root-namespace PID of its master."""
        home = self.dir / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        log = log or self.dir / ("%s.log" % name)
        argv = [python, "-m", "gunicorn", "AgentLocator.main:app", "-k", "sync", "-w", "1", "-b", bind,
                "--error-logfile", str(log), "--capture-output", "--log-level", "info"]
        pid = self.spawn(argv, log, cwd=app_dir, env=self.env(HOME=str(home), **(env or {})))
        self.services[name] = pid
        if wait:
            deadline = time.monotonic() + 30
            while "Booting worker" not in (log.read_text() if log.exists() else ""):
                if not psutil.pid_exists(pid) or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn on %s did not boot:\n%s" % (self.name, log.read_text()[-3000:]))
                time.sleep(0.05)
        return pid

    def stop_gunicorn(self, name="app"):
        pid = self.services.pop(name, None)
        if pid:
            stop_pid(pid, with_children=True)


def stop_pid(pid, with_children=False, grace=5):
    """TERM a process we started (and its children), KILL what is left after `grace` seconds."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [proc] + (proc.children(recursive=True) if with_children else [])
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    alive = _wait_gone(procs, grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(alive, grace)


def _wait_gone(procs, timeout):
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if alive:
            time.sleep(0.02)
    return alive


def fleet_work_dir(prefix):
    """A fresh work directory for a test's fleet; skips the test where network-namespace hosts cannot run."""
    why = usable()
    if why:
        pytest.skip("network-namespace hosts: %s" % why)
    ensure_packages()
    return Path(tempfile.mkdtemp(prefix=prefix))


class Fleet:
    """Hosts named `names` on a bridge; `inventory()` gives Ansible what it needs to reach them."""

    def __init__(self, workdir, names):
        self.dir = Path(workdir)
        self.tag = "gd%d" % (os.getpid() % 100000)   # short: interface names have 15 characters at most
        self.bridge = "%sbr" % self.tag
        self.prefix = None
        self.names = list(names)
        self.hosts = {}
        self.key = self.dir / "id_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        # Ansible's ssh ControlPersist masters for these hosts live here (a short path: a unix socket
        # path has at most 107 characters), so teardown finds them and stops them by PID.
        self.control_dir = Path(tempfile.mkdtemp(prefix="gd-cp-"))

    def __enter__(self):
        try:
            return self.create()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *exc):
        self.destroy()

    def create(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gunicorn-doctor-testbed", "-f", str(self.key))
        shutil.copy(str(self.key) + ".pub", self.authorized_keys)
        self.prefix = free_subnet()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", "%s.1/24" % self.prefix, "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for index, name in enumerate(self.names, start=1):
            self.hosts[name] = host = NetnsHost(self, index, name)
            host.create()
        return self

    def destroy(self):
        self.stop_ssh_masters()
        for host in reversed(list(self.hosts.values())):
            host.destroy()
        sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(str(self.control_dir), ignore_errors=True)

    def stop_ssh_masters(self):
        """Ansible's ssh connection masters (ControlPersist) for these hosts, stopped by PID."""
        needle = str(self.control_dir)
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            if proc.info["name"] == "ssh" and any(needle in arg for arg in proc.info["cmdline"] or []):
                stop_pid(proc.info["pid"])

    def __getitem__(self, name):
        return self.hosts[name]

    def connection_vars(self, name, python=sys.executable):
        """Inventory variables that reach host `name` over SSH with a fixed interpreter."""
        return {
            "ansible_host": self.hosts[name].address,
            "ansible_user": "root",
            "ansible_connection": "ssh",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                       "-o IdentitiesOnly=yes -o LogLevel=ERROR -o ConnectTimeout=5",
            "ansible_python_interpreter": python,
            "ansible_control_path_dir": str(self.control_dir),
        }


# --- PID 1 of a host ----------------------------------------------------------------------------------
def init(host_dir, hostname):
    """Runs as PID 1 inside a host's PID/UTS/mount namespaces: set up, then reap until SIGTERM."""
    host_dir = Path(host_dir)
    socket.sethostname(hostname)
    subprocess.run(["mount", "--bind", str(host_dir / "passwd"), "/etc/passwd"], check=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation directory

    def stop(signum, frame):
        # From PID 1, kill(-1) signals every other process of this PID namespace.
        try:
            os.kill(-1, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    time.sleep(0.02)
            except ChildProcessError:
                break
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    (host_dir / "init.ready").write_text(json.dumps({"pid": os.getpid()}))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.2)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "init":
    init(sys.argv[2], sys.argv[3])
