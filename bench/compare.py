#!/usr/bin/python3
"""bench/compare - Sluice against Postfix on this machine, in one run.

    bench/compare                  full comparison (installs Postfix, builds
                                   Sluice in Release, 3 rounds; ~15 minutes on
                                   2 cores), table to docs/performance.md
    bench/compare --quick --sluice-only
                                   the CI form: a reduced set for Sluice
                                   alone in under 2 minutes, no Postfix
                                   installed; prints the table, asserts no
                                   timing, exits 0 when every run completed
    bench/compare --help           all options

Both MTAs are configured alike: loopback only, one virtual domain bench.test
delivered to Maildirs of five users, each with its default durability (a 250
after DATA means the message is on stable storage), both running whole (the
Sluice delivery runner next to sluice-smtpd, Postfix's qmgr and virtual next
to its smtpd). Each measurement runs Sluice, then Postfix, round after round;
the table shows the median over the rounds.

Everything runs in a private mount namespace whose /etc/resolv.conf names
only 127.0.0.1 (as scripts/test): no DNS query leaves the machine. Sluice's
reverse lookups of the client go to a dnsmasq on a loopback port; Postfix
resolves 127.0.0.1 from /etc/hosts and relays to [127.0.0.1]:port without DNS.

Helpers: bench/smtpload.c (a load client that times DATA-end -> 250 and holds
idle connections), bench/cc-no-werror (compiler launcher of the Release
build). Method and results: docs/performance.md.
"""

import argparse
import ctypes
import itertools
import datetime
import json
import os
import platform
import pwd
import re
import select
import shutil
import signal
import stat
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS_MARKER = "SLUICE_BENCH_NAMESPACE"
USERS = [f"user{i}" for i in range(1, 6)]
DOMAIN = "bench.test"
SINK_DOMAIN = "sink.test"
SENDER = "bench@client.test"
KIB = 1024

# ---------------------------------------------------------------------------
# small helpers


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv, check=True, **kw):
    return subprocess.run(argv, check=check, **kw)


def have(cmd):
    return shutil.which(cmd) is not None or os.access(cmd, os.X_OK)


_libc = ctypes.CDLL(None, use_errno=True)
_children = []


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def spawn(argv, log_path=None, **kw):
    """A tracked child (killed, by its pid, when this script ends)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=kw.pop("stdin", subprocess.DEVNULL), stdout=kw.pop("stdout", out),
                         stderr=kw.pop("stderr", out), preexec_fn=_die_with_parent, **kw)
    if log_path:
        out.close()
    _children.append(p)
    return p


def stop_proc(p, timeout=10):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def wait_until(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def tcp_listening(port):
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fl = line.split()
                    if fl[3] == "0A" and int(fl[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def udp_bound(port):
    with open("/proc/net/udp") as f:
        next(f)
        return any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in f)


_ports = set()


def free_port():
    import socket
    import random
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        if port in _ports:
            continue
        ok = True
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            _ports.add(port)
            return port
    raise RuntimeError("no free loopback port")


# ---- /proc accounting ----

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fl = st[st.rfind(")") + 2:].split()
    ppid = int(fl[1])
    own = (int(fl[11]) + int(fl[12])) / CLK_TCK
    reaped = (int(fl[13]) + int(fl[14])) / CLK_TCK
    return ppid, own, reaped


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[0] == pid:
                out.append(int(d))
    return out


def proc_kib(pid, key, name="status"):
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


# ---- inotify: count files arriving in folders ----

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_Q_OVERFLOW = 0x8, 0x80, 0x100, 0x4000


class Arrivals:
    """Counts names appearing in some folders (created, linked or renamed
    into them; or, with close_write, files written and closed), from the
    moment it is made. Falls back to listing the folders on overflow."""

    def __init__(self, dirs, close_write=False):
        self.dirs = list(dirs)
        self.close_write = close_write
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_CLOSE_WRITE if close_write else (IN_CREATE | IN_MOVED_TO)
        for d in self.dirs:
            if _libc.inotify_add_watch(self.fd, d.encode(), mask) < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
        self.names = set()
        self.events = 0
        self.overflow = False
        self.base = sum(len(os.listdir(d)) for d in self.dirs)

    def count(self):
        if self.overflow:
            return sum(len(os.listdir(d)) for d in self.dirs) - self.base
        return self.events if self.close_write else len(self.names)

    def wait_for(self, n, timeout):
        """Waits until n arrivals; returns the monotonic time of the n-th
        (or None on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.count() >= n:
                return time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if not r:
                continue
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            i = 0
            while i + 16 <= len(buf):
                wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + ln].rstrip(b"\0")
                i += 16 + ln
                if mask & IN_Q_OVERFLOW:
                    self.overflow = True
                elif self.close_write:
                    self.events += 1
                else:
                    self.names.add((wd, name))

    def close(self):
        os.close(self.fd)


def clear_dir(d):
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))
        except IsADirectoryError:
            shutil.rmtree(os.path.join(d, name), ignore_errors=True)
        except FileNotFoundError:
            pass


_retired = itertools.count()


def retire_dir(d, trash):
    """Moves folder d into trash and puts an empty one with the same mode
    and owner in its place; an empty or missing d is left as it is."""
    try:
        with os.scandir(d) as it:
            if next(it, None) is None:
                return
        st = os.stat(d)
    except FileNotFoundError:
        return
    os.makedirs(trash, exist_ok=True)
    os.rename(d, os.path.join(trash, str(next(_retired))))
    os.mkdir(d)
    os.chown(d, st.st_uid, st.st_gid)
    os.chmod(d, stat.S_IMODE(st.st_mode))


def count_files(dirs):
    return sum(len(os.listdir(d)) for d in dirs)


# ---------------------------------------------------------------------------
# the programs under test


class Dns:
    """dnsmasq on a loopback port answering only from its own records: the
    PTR of 127.0.0.1 and the A of localhost (Sluice's forward-confirmed
    reverse lookup of the client), NXDOMAIN for everything else."""

    def __init__(self, work):
        self.port = free_port()
        self.dir = os.path.join(work, "dns")
        os.makedirs(self.dir)
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--local=/#/", "--ptr-record=1.0.0.127.in-addr.arpa,localhost",
                "--host-record=localhost,127.0.0.1", f"--pid-file={self.dir}/dnsmasq.pid",
                "--log-facility=-"]
        if os.getuid() == 0:
            argv.append("--user=root")
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.proc = spawn([exe] + argv[1:], os.path.join(self.dir, "dnsmasq.log"))
        if not wait_until(lambda: self.proc.poll() is not None or udp_bound(self.port), 10) \
                or self.proc.poll() is not None:
            raise RuntimeError("dnsmasq did not start")

    def stop(self):
        stop_proc(self.proc)


class Sink:
    """Postfix's smtp-sink on a loopback port, writing each message it gets
    to a tmpfs (so the sink's disk is not what is measured) where Arrivals
    counts them."""

    def __init__(self, work):
        self.port = free_port()
        self.dir = os.path.join(work, "sink")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o777)
        # a tmpfs: we are in a private mount namespace as root
        r = run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0777", "tmpfs", self.dir],
                check=False, capture_output=True)
        self.tmpfs = r.returncode == 0
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        argv = [exe]
        if os.getuid() == 0:
            argv += ["-u", "nobody"]
        argv += ["-d", os.path.join(self.dir, "m."), f"127.0.0.1:{self.port}", "1024"]
        self.proc = spawn(argv, os.path.join(work, "smtp-sink.log"))
        if not wait_until(lambda: self.proc.poll() is not None or tcp_listening(self.port), 10) \
                or self.proc.poll() is not None:
            raise RuntimeError("smtp-sink did not start")

    def clear(self):
        clear_dir(self.dir)

    def stop(self):
        stop_proc(self.proc)
        if self.tmpfs:
            run(["umount", self.dir], check=False)


class NullSink:
    """smtp-sink that stores nothing and answers every command at once: the
    same load command against it shows what the load tool and the kernel's
    loopback reach on this machine when the server does no work at all (the
    ceiling of the 1 KiB accept rows that have a target). Not for 100 KiB:
    smtp-sink reads a big body more slowly than Sluice stores it (895
    against ~1,100 msgs/s at 50 sessions), so it is no ceiling there."""

    name = "smtp-sink"
    can_deliver = False

    def __init__(self, work):
        self.port = free_port()
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        argv = [exe] + (["-u", "nobody"] if os.getuid() == 0 else []) + [f"127.0.0.1:{self.port}", "1024"]
        self.proc = spawn(argv, os.path.join(work, "smtp-sink-null.log"))
        if not wait_until(lambda: self.proc.poll() is not None or tcp_listening(self.port), 10) \
                or self.proc.poll() is not None:
            raise RuntimeError("smtp-sink (null) did not start")

    def clear_mail(self):
        pass

    def after_run(self):
        pass

    def stop(self):
        stop_proc(self.proc)


class Mta:
    """What bench/compare needs of an MTA: a port, Maildirs, the daemons'
    pids (for CPU and RSS), a reset between runs."""

    name = "?"
    can_deliver = True

    def maildirs(self):
        return [os.path.join(self.mail, u, "new") for u in USERS]

    def clear_mail(self):
        """Empties the Maildirs between runs by moving their folders aside,
        not by deleting the files: on ext4 without a journal every create
        walks the inodes freed in the last minutes (recently_deleted), so
        deleting one run's mail taxed the next run's deliveries, a cost of
        the harness rather than of either MTA (docs/performance.md). The
        folders moved aside go with the work folder at the end."""
        trash = os.path.join(self.dir, "retired")
        for u in USERS:
            for sub in ("new", "cur", "tmp"):
                retire_dir(os.path.join(self.mail, u, sub), trash)

    def delivered(self):
        return count_files(self.maildirs())

    def cpu(self):
        raise NotImplementedError

    def mem(self):
        """(RSS KiB, PSS KiB, processes) of all the daemons."""
        pids = self.pids()
        rss = sum(proc_kib(p, "VmRSS:") for p in pids)
        pss = sum(proc_kib(p, "Pss:", "smaps_rollup") for p in pids)
        return rss, pss, len(pids)


class Sluice(Mta):
    name = "Sluice"

    def __init__(self, work, bindir, dns, sink_port):
        self.dir = os.path.join(work, "sluice")
        self.mail = os.path.join(self.dir, "mail")
        self.spool = os.path.join(self.dir, "spool")
        self.bindir = bindir
        self.port = free_port()
        self.conf = os.path.join(self.dir, "sluice.conf")
        self.can_deliver = os.access(os.path.join(bindir, "sluice-delivery"), os.X_OK)
        os.makedirs(self.mail)
        for u in USERS:
            for sub in ("new", "cur", "tmp"):
                os.makedirs(os.path.join(self.mail, u, sub))
        with open(os.path.join(self.dir, "mailboxes"), "w") as f:
            for u in USERS:
                f.write(f"{u}@{DOMAIN} {os.path.join(self.mail, u)}\n")
        open(os.path.join(self.dir, "aliases"), "w").close()
        with open(os.path.join(self.dir, "transport"), "w") as f:
            f.write(f"{SINK_DOMAIN} [127.0.0.1]:{sink_port or 9}\n")
        with open(self.conf, "w") as f:
            f.write(f"""; written by bench/compare
[server]
hostname = mx.{DOMAIN}
spool = spool
log = stderr

[smtpd]
listen = 127.0.0.1:{self.port} mx
max_connections = 20000
max_connections_per_ip = 20000
trusted_networks = 127.0.0.0/8
spf = off

[domains]
local = {DOMAIN}
mailboxes = mailboxes
aliases = aliases

[delivery]
dns_servers = 127.0.0.1:{dns.port}
remote_port = {sink_port or 25}
transport = transport
""")
        self.smtpd = None
        self.delivery = None
        self.start()

    def start(self):
        self.smtpd = spawn([os.path.join(self.bindir, "sluice-smtpd"), "-c", self.conf],
                           os.path.join(self.dir, "smtpd.log"), cwd=self.dir)
        sock = os.path.join(self.spool, "run", "submit.sock")
        if not wait_until(lambda: self.smtpd.poll() is not None
                          or (tcp_listening(self.port) and os.path.exists(sock)), 20) \
                or self.smtpd.poll() is not None:
            raise RuntimeError(f"sluice-smtpd did not start; see {self.dir}/smtpd.log")
        if self.can_deliver:
            self.delivery = spawn([os.path.join(self.bindir, "sluice-delivery"), "-c", self.conf],
                                  os.path.join(self.dir, "delivery.log"), cwd=self.dir)
            dsock = os.path.join(self.spool, "run", "delivery.sock")
            if not wait_until(lambda: self.delivery.poll() is not None or os.path.exists(dsock), 20) \
                    or self.delivery.poll() is not None:
                raise RuntimeError(f"sluice-delivery did not start; see {self.dir}/delivery.log")

    def stop(self):
        stop_proc(self.delivery)
        stop_proc(self.smtpd)

    def restart(self, wipe_spool=False):
        """Fresh processes (and, without a runner, an empty spool: what was
        accepted cannot go anywhere, and a growing spool would skew the next
        run)."""
        self.stop()
        if wipe_spool:
            shutil.rmtree(self.spool, ignore_errors=True)
        self.start()

    def after_run(self):
        if not self.can_deliver:
            self.restart(wipe_spool=True)

    def pids(self):
        return [p.pid for p in (self.smtpd, self.delivery) if p is not None and p.poll() is None]

    def cpu(self):
        total = 0.0
        for pid in self.pids():
            st = proc_stat(pid)
            if st:
                total += st[1] + st[2]
        return total

    def version(self):
        try:
            rev = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                      text=True, check=False).stdout.strip()
            dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                        capture_output=True, text=True, check=False).stdout.strip()
            return f"commit {rev}{' + uncommitted changes' if dirty else ''}"
        except OSError:
            return "?"


class Postfix(Mta):
    name = "Postfix"

    def __init__(self, work, sink_port):
        self.dir = os.path.join(work, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.mail = os.path.join(self.dir, "mail")
        self.port = free_port()
        for d in (self.etc, self.queue, self.data, self.mail):
            os.makedirs(d)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        vuid = pwd.getpwnam("nobody").pw_uid
        vgid = pwd.getpwnam("nobody").pw_gid
        for u in USERS:
            for sub in ("new", "cur", "tmp"):
                os.makedirs(os.path.join(self.mail, u, sub))
        for dirpath, dirnames, _ in os.walk(self.mail):
            os.chown(dirpath, vuid, vgid)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in USERS:
                f.write(f"{u}@{DOMAIN} {u}/\n")
        with open(os.path.join(self.etc, "transport"), "w") as f:
            f.write(f"{SINK_DOMAIN} smtp:[127.0.0.1]:{sink_port or 9}\n")
        shutil.copy("/etc/postfix/dynamicmaps.cf", self.etc)
        if os.path.isdir("/etc/postfix/dynamicmaps.cf.d"):
            shutil.copytree("/etc/postfix/dynamicmaps.cf.d", os.path.join(self.etc, "dynamicmaps.cf.d"))
        # Postfix logs to syslog (/dev/log). Its own log file service,
        # postlogd, is not made for this volume (with 1,000 smtpd processes
        # logging, postlogd hits its watchdog and the master blocks for good
        # in sendto), and the machine's syslog is not ours to fill: in our
        # mount namespace /dev/log is /dev/null, so Postfix's log lines go
        # nowhere (connect fails at once). Sluice's log goes to a file.
        if os.path.exists("/dev/log"):
            run(["mount", "--bind", "/dev/null", "/dev/log"], check=False)
        # Defaults everywhere, but for what makes it a private, loopback-only
        # instance with the same virtual domain as Sluice and no DNS.
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""# written by bench/compare
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.{DOMAIN}
mydomain = {DOMAIN}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{self.etc}/vmailbox
virtual_mailbox_base = {self.mail}
virtual_uid_maps = static:{vuid}
virtual_gid_maps = static:{vgid}
transport_maps = texthash:{self.etc}/transport
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
""")
        # Debian's master.cf, without chroot (a private queue directory has
        # no copies of /etc in it), the smtpd on our loopback port with a
        # process limit high enough for the idle-connection rows.
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                line = line.rstrip("\n")
                if re.match(r"^smtp\s+inet\s", line):
                    out.append(f"127.0.0.1:{self.port} inet n - n - 11000 smtpd")
                    continue
                m = re.match(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)(\S+)(\s+.*)$", line)
                if m and not line.startswith("#"):
                    line = m.group(1) + "n" + m.group(3)
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("\n".join(out) + "\n")
        self.start()

    def postfix(self, *args):
        """Runs the postfix command; its output goes to a file (the master it
        starts must not hold a pipe of ours open)."""
        out = os.path.join(self.dir, "postfix-command.log")
        with open(out, "ab") as f:
            r = run(["postfix", "-c", self.etc] + list(args), check=False, stdout=f, stderr=f,
                    stdin=subprocess.DEVNULL)
        with open(out, errors="replace") as f:
            r.stdout, r.stderr = f.read()[-2000:], ""
        return r

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            return pid if os.path.exists(f"/proc/{pid}") else None
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        r = self.postfix("start")
        if not wait_until(lambda: self.master_pid() and tcp_listening(self.port), 20):
            raise RuntimeError(f"postfix did not start: {r.stdout}{r.stderr}; see {self.dir}/maillog")

    def stop(self):
        pid = self.master_pid()
        self.postfix("stop")
        if pid and not wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 15):
            self.postfix("abort")

    def reload_and_settle(self):
        """Makes every idle smtpd exit (postfix reload) and waits until only
        the long-lived processes are left."""
        self.postfix("reload")
        time.sleep(1)
        wait_until(lambda: not any(proc_comm(p) == "smtpd" for p in self.pids()), 30, 0.2)

    def after_run(self):
        pass

    def pids(self):
        m = self.master_pid()
        return [m] + children_of(m) if m else []

    def cpu(self):
        # The master's cutime/cstime holds the CPU of the children it has
        # reaped; the living children are counted themselves.
        m = self.master_pid()
        total = 0.0
        st = proc_stat(m) if m else None
        if st:
            total += st[1] + st[2]
        for c in children_of(m) if m else []:
            st = proc_stat(c)
            if st:
                total += st[1] + st[2]
        return total

    def version(self):
        r = run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=False)
        return f"{r.stdout.strip()} (Debian package)"


# ---------------------------------------------------------------------------
# load


class Load:
    """Starts the load generators: smtp-source where it is installed (the
    throughput, end-to-end and relay rows), bench/smtpload (latency, idle
    connections, and throughput when there is no smtp-source)."""

    def __init__(self, smtpload, use_smtp_source):
        self.smtpload = smtpload
        self.smtp_source = use_smtp_source and (shutil.which("smtp-source") or "/usr/sbin/smtp-source")
        self.tool = "smtp-source" if self.smtp_source else "smtpload"

    def argv(self, port, sessions, msgs, size, persistent, rcpt):
        if self.smtp_source:
            # -l is the body length; smtp-source adds ~150 bytes of headers
            a = [self.smtp_source, "-s", str(sessions), "-m", str(msgs), "-l", str(max(size - 160, 1)),
                 "-f", SENDER, "-t", rcpt, "-M", "client.test"]
            if persistent:
                a.append("-d")
            return a + [f"127.0.0.1:{port}"]
        a = [self.smtpload, "-s", str(sessions), "-m", str(msgs), "-l", str(size), "-f", SENDER,
             "-t", rcpt, "-T", "600"]
        if persistent:
            a.append("-d")
        return a + [f"127.0.0.1:{port}"]


# ---------------------------------------------------------------------------
# the measurements: each returns {"value": number, ...} or {"na": reason}


def drain(mta, expected, timeout=180):
    """Waits until expected messages are in the Maildirs, then empties them."""
    ok = True
    if mta.can_deliver:
        ok = wait_until(lambda: mta.delivered() >= expected, timeout, 0.05)
        time.sleep(0.3)  # the queue file removal after the last delivery
    mta.clear_mail()
    mta.after_run()
    return ok


def m_accept(mta, load, sessions, size, persistent, msgs, rcpt_i=0, work=None):
    argv = load.argv(mta.port, sessions, msgs, size, persistent, f"{USERS[rcpt_i]}@{DOMAIN}")
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t0
    errs = (r.stdout + r.stderr).strip()
    bad = r.returncode != 0 or (load.tool == "smtp-source" and re.search(r"warning|fatal|error", errs))
    drained = drain(mta, msgs)
    if bad:
        return {"na": f"load failed (exit {r.returncode}): {errs[-300:]}"}
    if not drained:
        return {"value": msgs / dt, "note": "not all delivered afterwards"}
    return {"value": msgs / dt}


def m_e2e(mta, load, msgs, sessions):
    """First message sent -> last one in its Maildir; one load process per
    user, the sessions split among them. Also the CPU of the daemons."""
    if not mta.can_deliver:
        return {"na": "runner not built"}, {"na": "runner not built"}
    mta.clear_mail()
    arr = Arrivals(mta.maildirs())
    k = len(USERS)
    per_sess = [sessions // k + (1 if i < sessions % k else 0) for i in range(k)]
    per_msgs = [msgs // k + (1 if i < msgs % k else 0) for i in range(k)]
    cpu0 = mta.cpu()
    t0 = time.monotonic()
    procs = [subprocess.Popen(load.argv(mta.port, per_sess[i], per_msgs[i], KIB, True, f"{USERS[i]}@{DOMAIN}"),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent) for i in range(k)]
    t_last = arr.wait_for(msgs, 600)
    outs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in procs]
    time.sleep(0.5)
    cpu1 = mta.cpu()
    arr.close()
    got = mta.delivered()
    mta.clear_mail()
    mta.after_run()
    if t_last is None:
        return ({"na": f"only {got} of {msgs} delivered in 600 s"},) * 2
    if any(p.returncode for p in procs):
        return ({"na": "load failed: " + " | ".join(o.strip()[-200:] for o in outs)},) * 2
    secs = t_last - t0
    return {"value": msgs / secs, "secs": secs}, {"value": (cpu1 - cpu0) / msgs * 1000}


def m_relay(mta, load, sink, msgs, sessions):
    if sink is None:
        return {"na": "smtp-sink not installed"}
    if not mta.can_deliver:
        return {"na": "runner not built"}
    sink.clear()
    arr = Arrivals([sink.dir], close_write=True)
    t0 = time.monotonic()
    p = subprocess.Popen(load.argv(mta.port, sessions, msgs, KIB, True, f"someone@{SINK_DOMAIN}"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         preexec_fn=_die_with_parent)
    t_last = arr.wait_for(msgs, 600)
    out = p.communicate(timeout=600)[0].decode(errors="replace")
    arr.close()
    time.sleep(0.3)
    sink.clear()
    mta.after_run()
    if t_last is None:
        return {"na": f"only {arr.count()} of {msgs} reached smtp-sink in 600 s"}
    if p.returncode:
        return {"na": "load failed: " + out.strip()[-300:]}
    return {"value": msgs / (t_last - t0)}


def m_latency(mta, smtpload, msgs, sessions):
    rcpts = ",".join(f"{u}@{DOMAIN}" for u in USERS)
    r = subprocess.run([smtpload, "-s", str(sessions), "-m", str(msgs), "-l", str(KIB), "-d", "-t", rcpts,
                        "-f", SENDER, "-T", "600", f"127.0.0.1:{mta.port}"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    drain(mta, msgs)
    kv = dict(x.split("=", 1) for x in r.stdout.split() if "=" in x)
    if r.returncode != 0 or "p99_ms" not in kv:
        return ({"na": f"smtpload failed: {(r.stdout + r.stderr).strip()[-300:]}"},) * 2
    return {"value": float(kv["p50_ms"])}, {"value": float(kv["p99_ms"])}


def m_idle(mta, smtpload, n, cap_s):
    """RSS (and PSS) added per idle connection: n connections that have read
    the greeting and say nothing. Fresh daemons first (a Sluice restart, a
    Postfix reload), so earlier runs' memory or idle processes do not blur
    the baseline. For Postfix, a connection is an smtpd process: when not
    all n are up within cap_s (or memory runs low), the ones that are
    count."""
    if isinstance(mta, Sluice):
        mta.restart(wipe_spool=not mta.can_deliver)
    else:
        mta.reload_and_settle()
    time.sleep(1)
    rss0, pss0, _ = mta.mem()
    p = subprocess.Popen([smtpload, "-I", str(n), "-P", "200", "-T", str(cap_s + 600),
                          f"127.0.0.1:{mta.port}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    t0 = time.monotonic()
    os.set_blocking(p.stdout.fileno(), False)
    line = b""
    note = ""
    while True:
        r, _, _ = select.select([p.stdout], [], [], 1)
        if r:
            chunk = p.stdout.read() or b""
            line += chunk
            if b"ready" in line or p.poll() is not None:
                break
        if time.monotonic() - t0 > cap_s:
            note = f"cap of {cap_s:.0f} s reached"
            break
        if mem_available_kib() < 2 * 1024 * 1024:
            note = "stopped at 2 GiB of free memory"
            break
    time.sleep(2)
    rss1, pss1, nproc = mta.mem()
    if isinstance(mta, Postfix):
        conns = sum(1 for pid in mta.pids() if proc_comm(pid) == "smtpd")
    else:
        m = re.search(rb"ok=(\d+)", line)
        conns = int(m.group(1)) if m else 0
    secs = time.monotonic() - t0
    p.stdin.close()
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    if isinstance(mta, Postfix):
        mta.reload_and_settle()
    if conns <= 0:
        return ({"na": f"no connection held: {line.decode(errors='replace')[-200:]}"},) * 2
    if conns < n:
        note = (note + "; " if note else "") + f"{conns} of {n} connections in {secs:.0f} s"
    rss = {"value": (rss1 - rss0) / conns, "total_mib": rss1 / 1024, "conns": conns, "procs": nproc}
    pss = {"value": (pss1 - pss0) / conns, "total_mib": pss1 / 1024, "conns": conns}
    if note:
        rss["note"] = pss["note"] = note
    return rss, pss


# ---------------------------------------------------------------------------
# the plan

class Row:
    def __init__(self, key, label, unit, better, target=None, fmt="{:,.0f}"):
        self.key, self.label, self.unit, self.better, self.target, self.fmt = key, label, unit, better, target, fmt
        self.vals = {"Sluice": [], "Postfix": [], NullSink.name: []}
        self.na = {}
        self.notes = {}


def accept_plan(quick):
    """(sessions, size, persistent, messages) for the accepted msgs/s rows."""
    if quick:
        return [(1, KIB, True, 200), (10, KIB, True, 500), (50, KIB, True, 1000),
                (50, KIB, False, 300), (50, 100 * KIB, True, 200)]
    # smtp-source itself takes 60-70 ms from start to exit even against
    # smtp-sink (50 sessions, 50 messages), whatever the server. In a run
    # of 2,500 messages that Sluice takes in ~0.6 s that was a tenth of the
    # time measured, against a hundredth of Postfix's 5 s. The rows with a
    # target, and their neighbours of the same kind, therefore run long
    # enough (about 2 s or more for Sluice) that the tool's start is noise;
    # both MTAs get the same counts. The other rows keep short runs (their
    # ratios lean towards 1 by up to a tenth; see docs/performance.md).
    counts = {
        (KIB, True): {1: 2000, 10: 6000, 50: 10000, 100: 10000},
        (KIB, False): {1: 300, 10: 1000, 50: 1500, 100: 1500},
        (100 * KIB, True): {1: 150, 10: 500, 50: 2000, 100: 2000},
        (100 * KIB, False): {1: 100, 10: 400, 50: 600, 100: 600},
    }
    plan = []
    for (size, persistent), by_s in counts.items():
        for s, m in by_s.items():
            plan.append((s, size, persistent, m))
    return plan


TARGETS = {
    ("accept", 50, KIB, True): "≥ 10×",
    ("accept", 1, KIB, True): "≥ 3×",
    ("accept", 50, 100 * KIB, True): "≥ 3×",
}


def machine_info(work):
    info = {}
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu"] = f"{os.cpu_count()} cores{', ' + model if model else ''}"
    info["memory"] = f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
    info["kernel"] = f"Linux {platform.release()}"
    try:
        with open("/etc/os-release") as f:
            osr = dict(line.rstrip().split("=", 1) for line in f if "=" in line)
        info["os"] = osr.get("PRETTY_NAME", "?").strip('"')
    except OSError:
        pass
    df = run(["df", "-T", work], capture_output=True, text=True, check=False).stdout.splitlines()
    disk = "?"
    if len(df) >= 2:
        fl = df[1].split()
        disk = f"{fl[1]} on {fl[0]}"
        dev = os.path.basename(fl[0])
        jt = f"/sys/fs/ext4/{dev}/journal_task"
        if fl[1] == "ext4" and os.path.exists(jt):
            with open(jt) as f:
                if f.read().strip() == "<none>":
                    disk = f"ext4 without a journal on {fl[0]}"
        if shutil.which("lsblk"):
            lb = run(["lsblk", "-dno", "NAME,TYPE,SIZE,ROTA,MODEL", f"/dev/{dev}"], capture_output=True,
                     text=True, check=False).stdout.strip()
            if lb:
                parts = lb.split(None, 4)
                rota = {"0": "non-rotational", "1": "rotational"}.get(parts[3] if len(parts) > 3 else "", "")
                disk += f" ({parts[1]}, {parts[2]}, {rota}{', ' + parts[4] if len(parts) > 4 else ''})"
    info["disk"] = f"spool and Maildirs on {disk}"
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


# ---------------------------------------------------------------------------
# output


def fmt_val(row, v):
    return row.fmt.format(v)


def ceiling_table(rows):
    """The rows measured against the null smtp-sink too: how far each
    program and each target are from what the load tool itself reaches."""
    rows = [r for r in rows if r.vals[NullSink.name]]
    if not rows:
        return []

    def pct(a, b):
        return f"{100 * a / b:.0f} %" if a is not None and b else "–"

    out = ["", "The load tool's ceiling, same run: the same `smtp-source` command against "
           "`smtp-sink`, which answers at once and stores nothing.", "",
           "| measurement | smtp-sink | Sluice | Sluice / smtp-sink | target | target / smtp-sink |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ceil = statistics.median(r.vals[NullSink.name])
        sl = statistics.median(r.vals["Sluice"]) if r.vals["Sluice"] else None
        pf = statistics.median(r.vals["Postfix"]) if r.vals["Postfix"] else None
        m = re.search(r"([0-9.]+)×", r.target or "")
        want = float(m.group(1)) * pf if m and pf else None
        out.append(f"| {r.label} | {fmt_val(r, ceil)} | {fmt_val(r, sl) if sl is not None else '–'} | "
                   f"{pct(sl, ceil)} | {fmt_val(r, want) + ' (' + r.target + ' Postfix)' if want else '–'} | "
                   f"{pct(want, ceil)} |")
    return out


def render(rows, mtas, info, args, load_tool, versions):
    names = [m.name for m in mtas]
    both = len(names) == 2
    head = "| measurement | " + " | ".join(names) + (" | Sluice/Postfix | target |" if both else " |")
    sep = "|---|" + "---:|" * len(names) + ("---:|---|" if both else "")
    lines = [head, sep]
    for row in rows:
        cells = []
        med = {}
        for n in names:
            vals = row.vals[n]
            if vals:
                med[n] = statistics.median(vals)
                c = fmt_val(row, med[n])
                if row.notes.get(n):
                    c += f" ({row.notes[n]})"
                cells.append(c)
            else:
                why = row.na.get(n, "not run")
                cells.append(f"n/a ({why if len(why) <= 60 else why[:57] + '...'})")
        line = f"| {row.label} | " + " | ".join(cells)
        if both:
            if "Sluice" in med and "Postfix" in med and med["Postfix"]:
                ratio = med["Sluice"] / med["Postfix"]
                line += f" | {ratio:.2f}×" if 0.1 <= ratio < 10 else f" | {ratio:.2g}×"
            else:
                line += " | –"
            line += f" | {row.target or ''}"
        lines.append(line + " |")
    table = "\n".join(lines + ceiling_table(rows))
    meta = [f"- date: {info['date']}",
            f"- machine: {info['cpu']}, {info['memory']} RAM, {info.get('os', '')}, {info['kernel']}",
            f"- disk: {info['disk']}",
            f"- Sluice: {versions.get('Sluice', '?')}, Release build"
            + ("" if mtas[0].can_deliver else " (delivery runner not built: its rows are n/a)"),
            ]
    if both:
        meta.append(f"- Postfix: {versions.get('Postfix', '?')}")
    meta.append(f"- load: {load_tool} for the msgs/s rows, bench/smtpload for latency and idle "
                f"connections; {args.rounds} round(s), median shown"
                + ("; quick mode (reduced set)" if args.quick else ""))
    meta.append(f"- command: `{' '.join(['bench/compare'] + sys.argv[1:])}`")
    return table, "\n".join(meta)


BEGIN, END = "<!-- bench/compare: begin -->", "<!-- bench/compare: end -->"

DOC_TEMPLATE = """# Performance

How fast Sluice takes mail in and hands it on, measured against Postfix on
the same machine in the same run, and how to rerun the measurement.

## How to run it

    bench/compare                       # full run: installs Postfix, builds Sluice
                                        # (Release, build-bench/), 3 rounds, ~15 min
                                        # on 2 cores; rewrites the table below
    bench/compare --quick --sluice-only # CI form: Sluice alone, reduced set,
                                        # < 2 min, prints the table, asserts nothing
    bench/drain.sh [BINDIR]             # sluice-delivery alone emptying a spool of
                                        # 5,000 messages for 5 Maildirs (N=...)

It runs as root (a private mount namespace, a private Postfix instance),
installs what is missing on Debian 12 (scripts/deps; Postfix with debconf's
"No configuration", so no system instance starts on port 25; not with
`--sluice-only`), builds Sluice in Release in `build-bench/`, and writes the
table between the markers below (a partial run, `--quick`, `--only` or
`--sluice-only`, writes `build-bench/performance-quick.md` instead, and the raw numbers of any run go
to `build-bench/bench-results.json`). It exits 0 when every run completed;
no timing is asserted. In CI, `--bin build/bin` skips the Release build
(about a minute on 2 cores) and uses the programs already built.

Options: `--rounds N`, `--only REGEX` (rows whose key matches, e.g.
`accept|latency`), `--bin DIR` (use built programs instead of building),
`--load smtpload` (the load client of the msgs/s rows when smtp-source is
not wanted; default: smtp-source when installed), `--no-install`, `--keep`
(keep the work folder), `--no-ceiling` (skip the null smtp-sink runs of
the load tool's ceiling, see "What is measured"), `--out FILE`,
`--postfix-idle-cap SECONDS` (how long
Postfix may take to open the 10,000 idle connections: it forks one smtpd per
connection). Run `bench/compare --help` for all.

{begin}
{end}

## What is measured, and how

- **Setup.** Both MTAs run from a work folder on the same disk
  (`build-bench/work-*`), loopback only, one virtual domain `bench.test`
  with five Maildir users, and their default durability: a 250 after DATA
  means the message is on stable storage (Sluice: group commit, docs/spool.md;
  Postfix: fsync of the queue file by cleanup). Both run whole while any row
  is measured: Sluice's `sluice-smtpd` and `sluice-delivery`; Postfix's
  master, smtpd, cleanup, qmgr, trivial-rewrite and virtual (all defaults,
  `in_flow_delay` included; no chroot). A row runs Sluice then Postfix, round
  after round; the table shows the median of the rounds. Between runs every
  message is waited for in its Maildir and the Maildirs are emptied.
- **No DNS leaves the machine.** The whole run is in a private mount
  namespace whose `/etc/resolv.conf` names 127.0.0.1 only. Sluice's
  reverse lookup of the client (PTR, then the forward check) goes to a
  dnsmasq on a loopback port that knows 127.0.0.1 ↔ localhost; Postfix
  finds 127.0.0.1 in `/etc/hosts` (`smtpd_peername_lookup` stays on, so
  both do the lookup); relaying uses `[127.0.0.1]:port` in a transport map
  (`smtp_dns_support_level = disabled`).
- **accepted msgs/s**: `smtp-source -s S -m M -l L [-d]` (Postfix's load
  tool; `-d`: all messages of a session over one connection, else QUIT and
  reconnect after each), wall time from start to its exit. "1 KiB" and
  "100 KiB" are the whole message, headers included.
- **the load tool's ceiling**: each 1 KiB accept row with a target is also run,
  with the same command, against a second `smtp-sink` that stores nothing
  and answers at once. It is printed as a second table: what smtp-source and
  the kernel's loopback reach on this machine when the server does no work,
  and how far each program and each target are from it. A target above
  that ceiling cannot be shown with this load tool on this machine. Not
  for 100 KiB: smtp-sink reads big bodies more slowly than Sluice stores
  them, so it is no ceiling there.
- **end to end**: 5,000 × 1 KiB over 50 sessions (five smtp-source
  processes, one per user): from the first connection until the 5,000th
  file appears in `Maildir/new` (inotify).
- **relay**: 2,000 × 1 KiB at 50 sessions to `someone@sink.test`, routed by
  the transport map to `smtp-sink` on another loopback port (it writes each
  message to a tmpfs, counted with inotify): from the first connection
  until the sink has them all.
- **latency**: `bench/smtpload` (C, epoll), 3,000 × 1 KiB at 50 sessions,
  several messages per connection: time from the last byte of `.\\r\\n`
  written to the 250 read, p50 and p99 over all messages.
- **memory**: N connections that read the greeting and stay silent;
  (sum of VmRSS of all daemon processes with them) − (before), ÷ N. For
  Postfix that is the master and every child, so each connection's own
  smtpd process is counted. PSS (shared pages divided among the processes
  sharing them) is shown too, because RSS counts Postfix's shared libraries
  once per process. Sluice is restarted and Postfix reloaded before each,
  so idle processes of earlier rows do not blur the baseline.
- **CPU per 1,000 messages**: user + system seconds of all daemon processes
  (from `/proc/PID/stat`; for Postfix the master's reaped-children time plus
  every living child) over the end-to-end run, per 1,000 messages. dnsmasq
  and the load tools are not counted.

## Why the numbers are what they are

(To be written with the spool design: docs/spool.md has the commit path.)
"""


def write_doc(path, table, meta, analysis):
    block = f"{BEGIN}\n## Results\n\n{meta}\n\n{table}\n\n{analysis}{END}"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    else:
        text = DOC_TEMPLATE.format(begin=BEGIN, end=END)
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------
# setup: packages, namespace, build


def install(args):
    """What a fresh Debian 12 lacks: the project's dependencies
    (scripts/deps) and, unless --sluice-only, Postfix for its load tools and
    as the comparison, with debconf's "No configuration" so that its package
    scripts do not set up and start a system instance on port 25."""
    deps = os.path.join(ROOT, "scripts", "deps")
    if os.access(deps, os.X_OK):
        run([deps])
    need = []
    if not args.sluice_only and not (have("postfix") or have("/usr/sbin/postfix")):
        need.append("postfix")
    for exe, pkg in (("dnsmasq", "dnsmasq-base"), ("unshare", "util-linux"), ("cc", "gcc")):
        if not have(exe) and not have(f"/usr/sbin/{exe}"):
            need.append(pkg)
    if not need:
        return
    if os.getuid() != 0:
        sys.exit(f"bench/compare: not root; install first: apt-get install {' '.join(need)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if "postfix" in need:
        subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type select No configuration\n",
                       text=True, check=True)
    log(f"installing {' '.join(need)}")
    opts = ["-y", "-q", "-o", "Dpkg::Use-Pty=0", "--no-install-recommends"]
    if subprocess.run(["apt-get", "install"] + opts + need, env=env).returncode != 0:
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install"] + opts + need, env=env)


def enter_namespace():
    """Re-executes this script in a private mount namespace (as scripts/test)."""
    if os.environ.get(NS_MARKER) == "1":
        return
    if os.getuid() != 0:
        sys.exit("bench/compare: run as root (it runs a private Postfix and mounts in a private namespace)")
    ns = ["unshare", "-m", "--propagation", "private"]
    env = dict(os.environ, **{NS_MARKER: "1"})
    probe = subprocess.run(ns + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        if "propagation" in probe.stderr and \
                subprocess.run(["unshare", "-m", "--propagation", "unchanged", "true"]).returncode == 0:
            ns = ["unshare", "-m", "--propagation", "unchanged"]
            env["SLUICE_BENCH_UNMOUNT"] = "1"
        else:
            sys.exit(f"bench/compare: cannot make a private mount namespace: {probe.stderr.strip()}")
    os.execvpe(ns[0], ns + [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def private_resolv(work):
    path = os.path.join(work, "resolv.conf")
    with open(path, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    if os.path.exists("/etc/resolv.conf"):
        run(["mount", "--bind", path, "/etc/resolv.conf"])
    with open("/etc/resolv.conf") as f:
        for line in f:
            fl = line.split()
            if fl[:1] == ["nameserver"] and fl[1:2] != ["127.0.0.1"]:
                sys.exit("bench/compare: /etc/resolv.conf still names another server; refusing to run")


def build(args):
    bdir = args.build_dir
    if args.bin:
        bindir = os.path.abspath(args.bin)
    else:
        log(f"building Sluice (Release) in {bdir}")
        cfg = ["cmake", "-S", ROOT, "-B", bdir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DSLUICE_TESTS=OFF",
               "-DCMAKE_C_FLAGS=-g", f"-DCMAKE_C_COMPILER_LAUNCHER={ROOT}/bench/cc-no-werror"]
        r = subprocess.run(cfg, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench/compare: cmake configure failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        r = subprocess.run(["cmake", "--build", bdir, "--target", "sluice-smtpd"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench/compare: building sluice-smtpd failed:\n{r.stdout[-4000:]}")
        r = subprocess.run(["cmake", "--build", bdir, "--target", "sluice-delivery"], capture_output=True, text=True)
        if r.returncode != 0:
            log("sluice-delivery did not build: the end-to-end and relay rows will be n/a")
            stale = os.path.join(bdir, "bin", "sluice-delivery")
            if os.path.exists(stale):
                os.unlink(stale)
        bindir = os.path.join(bdir, "bin")
    os.makedirs(bdir, exist_ok=True)
    smtpload = os.path.join(bdir, "smtpload")
    src = os.path.join(ROOT, "bench", "smtpload.c")
    if not os.path.exists(smtpload) or os.path.getmtime(smtpload) < os.path.getmtime(src):
        run(["cc", "-O2", "-Wall", "-o", smtpload, src])
    return bindir, smtpload


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(prog="bench/compare", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="reduced set, one round, < 2 minutes")
    ap.add_argument("--sluice-only", action="store_true", help="measure Sluice alone; do not install Postfix")
    ap.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--only", help="run only the rows whose key matches this regex "
                                   "(keys: accept-S-SIZE-keep|conn, e2e, cpu, relay, latency, idle-N)")
    ap.add_argument("--bin", help="use the programs in this folder instead of building")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--no-install", action="store_true", help="install nothing")
    ap.add_argument("--out", help="write the results here (default: docs/performance.md; "
                                  "with --quick: BUILD_DIR/performance-quick.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the load tool's ceiling (the accept rows with a target, run against a null smtp-sink)")
    ap.add_argument("--fs", choices=("here", "ext4-journal"), default="here",
                    help="where both MTAs' spools and Maildirs live: the build folder's "
                         "filesystem (default), or a fresh journaled ext4 on a loop device "
                         "(a 2 GiB image in the build folder). Every flush of a loop device is an fsync "
                         "of its image, so this is no stand-in for a second disk. "
                         "Not the default table: written beside the build")
    ap.add_argument("--load", choices=("auto", "smtp-source", "smtpload"), default="auto",
                    help="load generator of the msgs/s rows (auto: smtp-source when installed)")
    ap.add_argument("--postfix-idle-cap", type=float, default=300,
                    help="seconds Postfix may take to open the idle connections (default 300)")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.build_dir = os.path.abspath(args.build_dir)

    if os.environ.get(NS_MARKER) != "1":
        if not args.no_install:
            install(args)
        enter_namespace()

    # SIGTERM/SIGHUP end the run through the finally below, which stops
    # Postfix (a daemon, not our child), smtp-sink and dnsmasq (they change
    # user at start, which clears the parent-death signal).
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    started = time.monotonic()
    bindir, smtpload = build(args)
    work = tempfile.mkdtemp(prefix="work-", dir=args.build_dir)
    image = None
    if args.fs == "ext4-journal":
        # We are in a private mount namespace: nobody else sees the mount,
        # and the loop device goes with it (autoclear).
        image = os.path.join(args.build_dir, "bench-ext4.img")
        run(["rm", "-f", image])
        run(["truncate", "-s", "2G", image])
        run(["mkfs.ext4", "-q", "-F", image])
        run(["mount", "-o", "loop", image, work])
    os.chmod(work, 0o755)  # Postfix's daemons and virtual (as nobody) go in
    private_resolv(work)
    with_postfix = not args.sluice_only
    if with_postfix and not have("/usr/sbin/postfix"):
        sys.exit("bench/compare: Postfix is not installed (drop --no-install, or use --sluice-only)")
    use_source = shutil.which("smtp-source") or os.access("/usr/sbin/smtp-source", os.X_OK)
    if with_postfix and not use_source:
        sys.exit("bench/compare: smtp-source (package postfix) is missing")
    if args.load == "smtpload":
        use_source = False
    elif args.load == "smtp-source" and not use_source:
        sys.exit("bench/compare: smtp-source (package postfix) is missing")
    load = Load(smtpload, bool(use_source))
    only = re.compile(args.only) if args.only else None

    def want(key):
        return only is None or only.search(key)

    dns = sink = null_sink = None
    mtas = []
    rc = 0
    try:
        dns = Dns(work)
        have_sink = shutil.which("smtp-sink") or os.access("/usr/sbin/smtp-sink", os.X_OK)
        sink = Sink(work) if have_sink else None
        null_sink = NullSink(work) if have_sink and not args.no_ceiling else None
        sink_port = sink.port if sink else None
        sluice = Sluice(work, bindir, dns, sink_port)
        mtas.append(sluice)
        if with_postfix:
            mtas.append(Postfix(work, sink_port))
        versions = {m.name: m.version() for m in mtas}
        log(f"work folder {work}; load tool {load.tool}; "
            + ", ".join(f"{m.name} on 127.0.0.1:{m.port}" for m in mtas)
            + ("" if sluice.can_deliver else "; sluice-delivery not built"))

        q = args.quick
        rows = []
        tasks = []  # (rows it fills, function(mta) -> results)
        for (s, size, keep, m) in accept_plan(q):
            key = f"accept-{s}-{size // KIB}k-{'keep' if keep else 'conn'}"
            if not want(key):
                continue
            label = (f"accepted msgs/s, {s} session{'s' if s > 1 else ''}, {size // KIB} KiB, "
                     + ("many per connection" if keep else "one per connection"))
            r = Row(key, label, "msgs/s", "higher", TARGETS.get(("accept", s, size, keep)))
            rows.append(r)
            tasks.append(([r], lambda mta, s=s, size=size, keep=keep, m=m:
                          [m_accept(mta, load, s, size, keep, m)],
                          r.target is not None and size == KIB))
        e2e_n = 1000 if q else 5000
        if want("e2e") or want("cpu"):
            r1 = Row("e2e", f"end to end msgs/s, {e2e_n:,} × 1 KiB, 50 sessions, into Maildir",
                     "msgs/s", "higher", "≥ 4×")
            r2 = Row("cpu", "CPU seconds per 1,000 messages (end-to-end run, user+sys)", "s", "lower",
                     "≤ 0.5×", "{:.2f}")
            rows += [r1, r2]
            tasks.append(([r1, r2], lambda mta: list(m_e2e(mta, load, e2e_n, 50)), False))
        relay_n = 300 if q else 2000
        if want("relay"):
            r = Row("relay", f"relay msgs/s to smtp-sink, {relay_n:,} × 1 KiB, 50 sessions", "msgs/s", "higher")
            rows.append(r)
            tasks.append(([r], lambda mta: [m_relay(mta, load, sink, relay_n, 50)], False))
        lat_n = 500 if q else 3000
        if want("latency"):
            r1 = Row("latency-p50", "latency DATA-end → 250, p50 (ms), 50 sessions", "ms", "lower", None, "{:.2f}")
            r2 = Row("latency-p99", "latency DATA-end → 250, p99 (ms), 50 sessions", "ms", "lower", "≤ 1×",
                     "{:.2f}")
            rows += [r1, r2]
            tasks.append(([r1, r2], lambda mta: list(m_latency(mta, smtpload, lat_n, 50)), False))
        idle_tasks = []
        for n in ((1000,) if q else (1000, 10000)):
            if not want(f"idle-{n}"):
                continue
            r1 = Row(f"idle-{n}", f"RSS per idle connection, {n:,} connections (KiB)", "KiB", "lower",
                     "Sluice ≤ 16 KiB" if n == 10000 else None, "{:,.1f}")
            r2 = Row(f"idle-{n}-pss", f"PSS per idle connection, {n:,} connections (KiB)", "KiB", "lower",
                     None, "{:,.1f}")
            rows += [r1, r2]
            cap = args.postfix_idle_cap if n > 1000 else max(args.postfix_idle_cap, 120)
            idle_tasks.append(([r1, r2], lambda mta, n=n, cap=cap: list(m_idle(mta, smtpload, n, cap))))

        def record(row_list, mta, results):
            for row, res in zip(row_list, results):
                if "value" in res:
                    row.vals[mta.name].append(res["value"])
                    if res.get("note"):
                        row.notes[mta.name] = res["note"]
                    extra = f" ({res['note']})" if res.get("note") else ""
                    log(f"  {mta.name:8s} {row.label}: {fmt_val(row, res['value'])}{extra}")
                else:
                    row.na[mta.name] = res["na"]
                    log(f"  {mta.name:8s} {row.label}: n/a: {res['na']}")

        raw = []
        for rnd in range(1, args.rounds + 1):
            log(f"round {rnd} of {args.rounds}")
            for row_list, fn, with_ceiling in tasks:
                for mta in mtas + ([null_sink] if with_ceiling and null_sink else []):
                    res = fn(mta)
                    record(row_list, mta, res)
                    raw.append({"round": rnd, "mta": mta.name, "rows": [r.key for r in row_list], "results": res})
        if idle_tasks:
            log("idle connections (once: deterministic, and slow for Postfix)")
            for row_list, fn in idle_tasks:
                for mta in mtas:
                    res = fn(mta)
                    record(row_list, mta, res)
                    raw.append({"round": 1, "mta": mta.name, "rows": [r.key for r in row_list], "results": res})

        info = machine_info(work)
        table, meta = render(rows, mtas, info, args, load.tool, versions)
        print()
        print(meta)
        print()
        print(table)
        print()
        log(f"done in {time.monotonic() - started:.0f} s")
        with open(os.path.join(args.build_dir, "bench-results.json"), "w") as f:
            json.dump({"info": info, "versions": versions, "raw": raw}, f, indent=1)
        if not args.no_write:
            # Only a full run of both programs replaces the table in the docs;
            # a partial one (--quick, --only, --sluice-only) goes beside the build.
            partial = args.quick or args.only or args.sluice_only or args.fs != "here"
            out = args.out or (os.path.join(args.build_dir, "performance-quick.md") if partial
                               else os.path.join(ROOT, "docs", "performance.md"))
            analysis = ""
            write_doc(out, table, meta, analysis)
            log(f"written to {out}")
        if any(r.na for r in rows if not all(v == "runner not built" or "not installed" in v
                                             for v in r.na.values())):
            rc = 1
            log("some runs failed (n/a above)")
    finally:
        for m in mtas:
            try:
                m.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {m.name}: {e}")
        if sink:
            sink.stop()
        if null_sink:
            null_sink.stop()
        if dns:
            dns.stop()
        for p in _children:
            stop_proc(p, 5)
        if os.environ.get("SLUICE_BENCH_UNMOUNT") == "1":
            run(["umount", "/etc/resolv.conf"], check=False)
        if not args.keep:
            if image:
                run(["umount", work], check=False)
                os.unlink(image)
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}" + (f" (mounted from {image} in the namespace only)" if image else ""))
    return rc


if __name__ == "__main__":
    sys.exit(main())
