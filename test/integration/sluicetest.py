"""sluicetest - the harness every integration test imports (stdlib only).

ctest runs each test_*.py with Debian's /usr/bin/python3 and the environment
SLUICE_BIN (the built programs) and SLUICE_SRC (the repository root); a file
also runs by hand: `python3 test/integration/test_smtpd_basic.py -v` (it then
uses build/bin of the repository it lives in).

What it gives a test:

  Sluice       a temporary instance: config, spool, maps and Maildirs in a
               temp dir; start_smtpd() / start_delivery() run the real
               programs on free loopback ports; stop() checks a clean exit
               and no sanitizer report; spool inspection (spool_ids, envelope,
               message); everything cleaned up by the TestCase.
  DnsServer    dnsmasq on 127.0.0.1:<free port> with MX/A/TXT/... records,
               and a small stdlib DNS client (query) to check it.
  SmtpConn     a raw SMTP client over a socket: send exact bytes, read
               replies (multi-line aware), see when the server closes.
  SluiceCase   unittest.TestCase with assertReply / assertQueued that show
               the server's log tail when they fail.

Environment knobs: SLUICE_TEST_TIMEOUT (seconds to wait for a reply or a
start, default 15), SLUICE_KEEP=1 (keep temp dirs), SLUICE_TEST_CACHE (where
the test certificate is cached).
"""

import atexit
import ctypes
import fcntl
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import zlib

SRC = os.environ.get("SLUICE_SRC") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLUICE_BIN") or os.path.join(SRC, "build", "bin")
TIMEOUT = float(os.environ.get("SLUICE_TEST_TIMEOUT", "15"))
KEEP = os.environ.get("SLUICE_KEEP") == "1"
CRLF = b"\r\n"

# A daemon stopped with SIGTERM must shut down cleanly and exit 0: a daemon
# that just dies on the signal never runs LeakSanitizer's exit check.
CLEAN_EXIT_CODES = (0,)
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "WARNING: ThreadSanitizer",
)

# ---------------------------------------------------------------------------
# child processes: every one is killed when this process exits or dies

_children = set()
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_children():
    for p in list(_children):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_children)


def spawn(argv, log_path, cwd=None, env=None):
    """Starts argv with stdout+stderr appended to log_path; tracked for cleanup."""
    with open(log_path, "ab") as log:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, cwd=cwd, env=env,
                             preexec_fn=_die_with_parent)
    _children.add(p)
    return p


# ---------------------------------------------------------------------------
# ports

_used_ports = set()
_rng = random.SystemRandom()
# Tests run in parallel (ctest -j): a port found free here may be found free
# by another test process before either binds it. Each port handed out is
# claimed with a lock file held until this process exits, which then removes
# it (a killed process leaves an empty file, which the next claim reuses).
_PORT_CLAIMS = os.path.join(tempfile.gettempdir(), "sluice-test-ports")
_port_claims = []


def _claim_port(port):
    path = os.path.join(_PORT_CLAIMS, str(port))
    for _ in range(3):
        try:
            os.makedirs(_PORT_CLAIMS, mode=0o777, exist_ok=True)
            f = open(path, "a")
        except OSError:
            return True  # no shared folder to claim in: the bind probe alone
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        # The holder before us removes the name as it leaves: a lock taken
        # on the file it removed claims nothing, so the name must still be
        # this file.
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                _port_claims.append((path, f))
                return True
        except FileNotFoundError:
            pass
        f.close()
    return False


def _release_ports():
    for path, f in _port_claims:
        try:
            os.unlink(path)  # still locked: nobody can claim it in between
        except OSError:
            pass
        f.close()
    _port_claims.clear()


atexit.register(_release_ports)


def free_port():
    """A loopback port free for TCP and UDP, below the ephemeral range (so an
    outgoing connection cannot take it first), not handed out before here
    nor to another test process running now."""
    for _ in range(500):
        port = _rng.randrange(20000, 32000)
        if port in _used_ports or not _claim_port(port):
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
            _used_ports.add(port)
            return port
    raise RuntimeError("no free loopback port found")


def _proc_net_ports(proto, state=None):
    ports = set()
    for name in (proto, proto + "6"):
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if state is None or fields[3] == state:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def tcp_listening(port):
    """Whether something listens on TCP port (read from /proc: no connection
    is made, so the server sees nothing)."""
    return port in _proc_net_ports("tcp", "0A")


def unix_bound(path, listening=False):
    """Whether a live unix socket is bound to path (from /proc/net/unix: a
    stale socket file left by a killed process does not count); with
    listening, only a listening stream socket counts."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and (
                    not listening or int(fields[3], 16) & 0x10000):
                return True
    return False


def udp_bound(port):
    return port in _proc_net_ports("udp")


def wait_until(pred, timeout=TIMEOUT, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------
# the test certificate: made once, shared by every test of a run

def test_cert():
    """(cert.pem, key.pem): self-signed for mx.example.test, localhost and
    127.0.0.1; cached (SLUICE_TEST_CACHE) and remade when a week old."""
    cache = os.environ.get("SLUICE_TEST_CACHE") or os.path.join(
        tempfile.gettempdir(), f"sluice-test-cache-{os.getuid()}")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    cert, key = os.path.join(cache, "cert.pem"), os.path.join(cache, "key.pem")
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = (os.path.exists(key) and os.path.exists(cert)
                 and time.time() - os.path.getmtime(cert) < 7 * 86400)
        if not fresh:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-days", "30", "-subj", "/CN=mx.example.test",
                 "-addext",
                 "subjectAltName=DNS:mx.example.test,DNS:localhost,IP:127.0.0.1",
                 "-keyout", key + ".tmp", "-out", cert + ".tmp"],
                check=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            os.chmod(key + ".tmp", 0o600)
            os.replace(key + ".tmp", key)
            os.replace(cert + ".tmp", cert)
    return cert, key


# ---------------------------------------------------------------------------
# daemons

class Daemon:
    """One started program: its process, its log, a clean stop."""

    def __init__(self, name, popen, log_path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def sanitizer_report(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):i + 4000]
        return None

    def stop(self, timeout=TIMEOUT):
        """SIGTERM, then SIGKILL after timeout. Returns a list of problems
        (empty when it exited cleanly and printed no sanitizer report)."""
        problems = []
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                problems.append(f"{self.name} did not exit within {timeout}s of SIGTERM")
        rc = self.popen.returncode
        _children.discard(self.popen)
        if rc not in CLEAN_EXIT_CODES and not problems:
            how = f"signal {-rc}" if rc < 0 else f"status {rc}"
            problems.append(f"{self.name} exited with {how}, expected a clean exit 0")
        report = self.sanitizer_report()
        if report:
            problems.append(f"{self.name} printed a sanitizer report:\n{report}")
        return problems

    def kill9(self):
        if self.alive():
            self.popen.kill()
        self.popen.wait()
        _children.discard(self.popen)


class Sluice:
    """A temporary Sluice instance: config, spool, maps and Maildirs below a
    temp dir. Pass the TestCase so that cleanup is registered with it.

    Defaults: hostname mx.example.test; local domains example.test and
    localhost; mailboxes user@, alice@, bob@example.test (Maildirs below
    DIR/mail/); aliases postmaster@ (each local domain) and abuse@example.test
    to user@example.test; one mx listener; its own DnsServer (dns=True)
    whose records a test may add before starting."""

    def __init__(self, case=None, *, hostname="mx.example.test",
                 local_domains=("example.test", "localhost"),
                 users=("user", "alice", "bob"), aliases=None,
                 listeners=("mx",), dns=True):
        self.case = case
        self.dir = tempfile.mkdtemp(prefix="sluice-test-")
        self.hostname = hostname
        self.local_domains = list(local_domains)
        self.conf_path = os.path.join(self.dir, "sluice.conf")
        self.spool = os.path.join(self.dir, "spool")
        self.maildir_root = os.path.join(self.dir, "mail")
        os.makedirs(self.maildir_root)
        first = self.local_domains[0]
        self.mailboxes = {f"{u}@{first}": os.path.join(self.maildir_root, u) for u in users}
        if aliases is None:
            aliases = {f"postmaster@{d}": f"user@{first}" for d in self.local_domains}
            aliases[f"abuse@{first}"] = f"user@{first}"
        self.aliases = dict(aliases)
        self.ports = {kind: free_port() for kind in listeners}
        if dns is True:
            dns = DnsServer(case)
        self.dns = dns or None
        self.daemons = {}
        self._spool_tmpfs = None
        self.env = {}  # extra environment of the daemons started from now on
        self._cleaned = False
        self.config = {}
        if case is not None:
            case.addCleanup(self.cleanup)
        self.write_config()

    # ---- configuration ----

    def default_config(self):
        cert, key = test_cert()
        return {
            "server": {
                "hostname": self.hostname,
                "spool": "spool",
                "log": "stderr",
            },
            "smtpd": {
                "listen": [f"127.0.0.1:{p} {kind}" for kind, p in self.ports.items()],
                "max_message_size": 10485760,
                "max_recipients": 100,
                "max_connections": 100,
                "max_connections_per_ip": 20,
                "trusted_networks": "",
                "tls_cert": cert,
                "tls_key": key,
                "spf": "off",
            },
            "domains": {
                "local": " ".join(self.local_domains),
                "mailboxes": "mailboxes",
                "aliases": "aliases",
            },
            "delivery": {
                "dns_servers": self.dns.server if self.dns else "",
                "tls": "may",
            },
        }

    def write_config(self, **sections):
        """Writes sluice.conf and the maps. Each keyword is a section whose
        dict is merged over the defaults: a value None removes the key, a list
        repeats it (listen). Returns the config text."""
        config = self.default_config()
        for section, keys in sections.items():
            merged = config.setdefault(section, {})
            for k, v in keys.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
        self.config = config
        out = []
        for section, keys in config.items():
            out.append(f"[{section}]")
            for k, v in keys.items():
                for item in (v if isinstance(v, (list, tuple)) else [v]):
                    if isinstance(item, bool):
                        item = "yes" if item else "no"
                    out.append(f"{k} = {item}")
            out.append("")
        text = "\n".join(out)
        with open(self.conf_path, "w") as f:
            f.write(text)
        self.write_maps()
        return text

    def write_maps(self):
        with open(os.path.join(self.dir, "mailboxes"), "w") as f:
            for addr, path in self.mailboxes.items():
                f.write(f"{addr} {path}\n")
        with open(os.path.join(self.dir, "aliases"), "w") as f:
            for addr, target in self.aliases.items():
                f.write(f"{addr} {target}\n")

    def cfg(self, section, key):
        return self.config[section][key]

    def port(self, kind="mx"):
        return self.ports[kind]

    # ---- running ----

    def _start(self, prog, ready, wrap=()):
        path = os.path.join(BIN, prog)
        if not os.access(path, os.X_OK):
            raise AssertionError(f"{path} is not built (SLUICE_BIN={BIN})")
        if prog in self.daemons and self.daemons[prog].alive():
            raise AssertionError(f"{prog} is already running")
        if self.dns is not None and not self.dns.running():
            self.dns.start()
        log_path = os.path.join(self.dir, f"{prog}.log")
        with open(log_path, "ab") as f:
            f.write(f"---- start {prog} at {time.strftime('%H:%M:%S')}\n".encode())
        env = {**os.environ, **self.env} if self.env else None
        popen = spawn(list(wrap) + [path, "-c", self.conf_path], log_path, cwd=self.dir, env=env)
        d = Daemon(prog, popen, log_path)
        self.daemons[prog] = d
        if not wait_until(lambda: not d.alive() or ready()):
            d.kill9()
            raise AssertionError(f"{prog} not ready within {TIMEOUT}s; log:\n{d.log_tail()}")
        if not d.alive():
            raise AssertionError(
                f"{prog} exited at start (status {d.popen.returncode}); log:\n{d.log_tail()}")
        return d

    def start_smtpd(self):
        """Starts sluice-smtpd and waits until it serves: every listener is
        bound and the local submission socket run/submit.sock listens (it
        is made after the spool is opened and recovered; the ports are bound
        earlier, before privileges are dropped)."""
        wrap = ()
        if self._spool_tmpfs:
            wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$2" && shift 2 && exec "$@"',
                    "sh", self._spool_tmpfs, self.spool]
        def ready():
            return (all(tcp_listening(p) for p in self.ports.values())
                    and unix_bound(os.path.join(self.spool, "run", "submit.sock"), True))
        return self._start("sluice-smtpd", ready, wrap)

    def start_delivery(self):
        """Starts sluice-delivery; ready when its datagram socket
        run/delivery.sock is bound."""
        sock = os.path.join(self.spool, "run", "delivery.sock")
        return self._start("sluice-delivery", lambda: unix_bound(sock))

    def smtpd(self):
        return self.daemons["sluice-smtpd"]

    def stop(self, prog="sluice-smtpd"):
        """Stops one daemon; fails the test if it did not exit cleanly."""
        problems = self.daemons[prog].stop()
        if problems:
            raise AssertionError("\n".join(problems))

    def kill9(self, prog="sluice-smtpd"):
        self.daemons[prog].kill9()

    def log(self, prog="sluice-smtpd"):
        d = self.daemons.get(prog)
        return d.log() if d else ""

    def log_tails(self, lines=30):
        return "\n".join(f"--- {name} log (last {lines} lines) ---\n{d.log_tail(lines)}"
                         for name, d in self.daemons.items())

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        problems = []
        for d in self.daemons.values():
            problems += d.stop()
        if self.dns is not None:
            self.dns.stop()
        if problems:
            problems.append(f"(files kept in {self.dir})")
            raise AssertionError("\n".join(problems))
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- a spool on a small tmpfs (disk-full tests) ----

    def use_tmpfs_spool(self, size="9m"):
        """Makes start_smtpd run the server in its own mount namespace with a
        tmpfs of `size` mounted on the spool. Skips the test when this
        machine does not allow it (needs root or user namespaces)."""
        probe = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o "size=$1" tmpfs "$2"', "sh", size, self.dir],
            stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if probe.returncode != 0:
            raise unittest.SkipTest(
                f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}")
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        self._spool_tmpfs = size

    # ---- the spool ----

    def spool_view(self):
        """The spool as the server sees it (through /proc/PID/root when it
        runs in its own mount namespace)."""
        if self._spool_tmpfs:
            return f"/proc/{self.smtpd().pid}/root{self.spool}"
        return self.spool

    def spool_files(self, sub):
        try:
            return sorted(os.listdir(os.path.join(self.spool_view(), sub)))
        except FileNotFoundError:
            return []

    def spool_settle(self, timeout=5.0):
        """Waits until every message acknowledged so far is in queue/ or
        delivered: a message that got its 250 through the journal is handed
        to the runner, or written into queue/ by the checkpoint, some
        milliseconds later, and the journal's mark then passes its record
        (docs/spool.md, "The journal")."""
        d = self.daemons.get("sluice-smtpd")
        if d is None or not d.alive():
            return  # nobody to finish them: they are leftovers (or in the journal)
        deadline = time.monotonic() + timeout
        journal = os.path.join(self.spool_view(), "journal")
        last = journal_last_seq(journal)
        while last is not None and time.monotonic() < deadline:
            mark = journal_mark(journal)
            if mark is None or mark >= last:
                break
            time.sleep(0.005)
        # Then the file commits under way now (large messages, and the
        # checkpointer's). A file taken from free/ is written where it lies,
        # locked, until its rename into queue/.
        def under_way():
            return ({"incoming/" + n for n in self.spool_files("incoming") if n.endswith(".env")}
                    | {"free/" + n for n in self.claimed_in_free()})
        pending = under_way()
        while pending and time.monotonic() < deadline:
            time.sleep(0.005)
            pending &= under_way()

    def claimed_in_free(self):
        """Names in free/ that a daemon holds locked (being written, or
        given back a moment ago)."""
        held = []
        for name in self.spool_files("free"):
            try:
                fd = os.open(os.path.join(self.spool_view(), "free", name),
                             os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # gone meanwhile, or not a file
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(name)
            finally:
                os.close(fd)
        return held

    def spool_ids(self):
        """Ids of committed messages: queue/ID.env exists."""
        self.spool_settle()
        return [n[:-4] for n in self.spool_files("queue")
                if n.endswith(".env") and re.fullmatch(r"[0-9A-F]{14}", n[:-4])]

    def spool_path(self, *parts):
        if parts and parts[0] == "queue":
            self.spool_settle()
        return os.path.join(self.spool_view(), *parts)

    def envelope(self, qid):
        self.spool_settle()
        with open(self.spool_path("queue", qid + ".env"), "rb") as f:
            return Envelope(f.read())

    def message(self, qid):
        self.spool_settle()
        with open(self.spool_path("queue", qid + ".msg"), "rb") as f:
            return f.read()

    def envelopes(self):
        return {qid: self.envelope(qid) for qid in self.spool_ids()}

    # ---- Maildirs ----

    def maildir(self, addr):
        return self.mailboxes[addr]

    def maildir_messages(self, addr):
        """Contents of the messages in the Maildir's new/ and cur/, by name order."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mailboxes[addr], sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    # ---- clients ----

    def connect(self, kind="mx", **kw):
        """A raw SMTP connection to a listener (greeting read)."""
        return SmtpConn(self.ports[kind], **kw)

    def smtplib(self, kind="mx"):
        c = smtplib.SMTP("127.0.0.1", self.ports[kind], local_hostname="client.test",
                         timeout=TIMEOUT)
        if self.case is not None:
            self.case.addCleanup(_close_quietly, c)
        return c


def _close_quietly(c):
    try:
        c.close()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# spool files

class Envelope:
    """An envelope file (include/sluice/envelope.h text form): a version line,
    "key: value" lines, recipient blocks opened by "rcpt:", and a last line
    "end: CRC" (CRC-32 of every byte before that line)."""

    def __init__(self, data):
        self.raw = data
        text = data.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.version = lines[0] if lines else ""
        self.fields = {}
        self.rcpts = []
        self.duplicates = []
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if key == "rcpt":
                self.rcpts.append({"rcpt": value})
            elif key.startswith("rcpt-") and self.rcpts:
                self.rcpts[-1][key] = value
            else:
                if key in self.fields:
                    self.duplicates.append(key)
                self.fields[key] = value
        last = lines[-1] if lines else ""
        m = re.fullmatch(r"end: ([0-9a-fA-F]{8})", last)
        self.complete = bool(m)
        self.crc_ok = False
        if m:
            body = data[:data.rfind(b"end: ")]
            self.crc_ok = zlib.crc32(body) == int(m.group(1), 16)

    def get(self, key, default=None):
        return self.fields.get(key, default)

    @property
    def sender(self):
        return self.fields.get("sender")

    @property
    def recipients(self):
        return [r["rcpt"] for r in self.rcpts]

    def __repr__(self):
        return self.raw.decode("utf-8", "replace")


def split_received(msg):
    """Splits a spooled message into (the leading Received: header with its
    folded lines, the rest as the client sent it)."""
    if not msg.startswith(b"Received:"):
        raise AssertionError(f"message does not start with a Received: header: {msg[:200]!r}")
    i = msg.find(CRLF)
    while i >= 0 and msg[i + 2:i + 3] in (b" ", b"\t"):
        i = msg.find(CRLF, i + 2)
    if i < 0:
        raise AssertionError(f"unterminated Received: header: {msg[:400]!r}")
    return msg[:i + 2], msg[i + 2:]


# ---------------------------------------------------------------------------
# SMTP over a raw socket

class ConnectionClosed(AssertionError):
    pass


class SmtpReply:
    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "
        self.raw = raw

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def last(self):
        return self.lines[-1] if self.lines else ""

    @property
    def enhanced(self):
        """The enhanced status code (RFC 3463) on the last line, or None."""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)", self.last)
        return m.group(1) if m else None

    def enhanced_everywhere(self):
        """RFC 2034: the same enhanced code on every line, agreeing with the
        reply code's class."""
        e = self.enhanced
        return (e is not None and e[0] == str(self.code)[0]
                and all(re.match(re.escape(e) + r"(?: |$)", line) for line in self.lines))

    def __repr__(self):
        return self.raw.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", " | ")

    __str__ = __repr__


class SmtpConn:
    """A raw SMTP client: exact bytes out, parsed replies in."""

    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT, greeting=True):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        self.eof = False
        self.greeting = self.reply() if greeting else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if self.eof:
                raise ConnectionClosed(f"connection closed by the server (pending: {bytes(self.buf)!r})")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"no reply within {self.timeout}s (pending: {bytes(self.buf)!r})")
            self._fill(left)

    def reply(self, timeout=None):
        """Reads one whole reply (through its last line "NNN text")."""
        deadline = time.monotonic() + (timeout or self.timeout)
        raw = b""
        lines = []
        code = None
        while True:
            line = self._line(deadline)
            raw += line
            m = re.fullmatch(rb"(\d{3})([ -]?)(.*?)\r?\n", line, re.S)
            if not m:
                raise AssertionError(f"malformed reply line {line!r}")
            if not line.endswith(CRLF):
                raise AssertionError(f"reply line not ended by CRLF: {line!r}")
            c = int(m.group(1))
            if code is not None and c != code:
                raise AssertionError(f"reply code changed inside a multi-line reply: {raw!r}")
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return SmtpReply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        """Sends one command line (CRLF added) and reads its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + CRLF)
        return self.reply(timeout)

    def ehlo(self, name="client.test"):
        r = self.cmd(f"EHLO {name}")
        if r.code != 250:
            raise AssertionError(f"EHLO refused: {r}")
        return r

    def all_replies(self, timeout=None):
        """Reads replies until the server closes the connection."""
        out = []
        while True:
            try:
                out.append(self.reply(timeout))
            except ConnectionClosed:
                return out

    def closed(self, timeout=None):
        """Waits for the server to close; True if it did (data still unread
        before the close is discarded)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._fill(left)
        except socket.timeout:
            return False
        return True

    def starttls(self, context, server_hostname="mx.example.test"):
        if self.buf:
            raise AssertionError(f"bytes after the STARTTLS reply: {bytes(self.buf)!r}")
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def transaction(self, sender, rcpts, body, *, mail_params="", check=True):
        """MAIL, RCPT..., DATA, the body (dot-stuffed here, CRLF.CRLF added),
        one step at a time. Returns the reply after the final dot. With check,
        any refusal before it raises."""
        r = self.cmd(f"MAIL FROM:<{sender}>{' ' + mail_params if mail_params else ''}")
        if check and r.code != 250:
            raise AssertionError(f"MAIL refused: {r}")
        for rcpt in ([rcpts] if isinstance(rcpts, str) else rcpts):
            r = self.cmd(f"RCPT TO:<{rcpt}>")
            if check and r.code != 250:
                raise AssertionError(f"RCPT {rcpt} refused: {r}")
        r = self.cmd("DATA")
        if check and r.code != 354:
            raise AssertionError(f"DATA refused: {r}")
        if r.code != 354:
            return r
        self.send(dot_stuff(body) + b".\r\n")
        return self.reply()


def dot_stuff(body):
    """RFC 5321 4.5.2 transparency, and a final CRLF if missing."""
    if isinstance(body, str):
        body = body.encode()
    if body and not body.endswith(CRLF):
        body += CRLF
    out = re.sub(rb"(?m)^\.", b"..", body)
    return out


QUEUED_RE = re.compile(r"2\.0\.0 Ok: queued as ([0-9A-F]{14})")



# ---- the spool journal, read as a reader (include/sluice/journal_format.h) ----

def _u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def _u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


def journal_mark(path):
    """The journal's mark (the higher of its two valid slots), or None."""
    try:
        with open(path, "rb") as f:
            page = f.read(1024)
    except OSError:
        return None
    best = None
    for k in (0, 1):
        p = page[k * 512:k * 512 + 20]
        if len(p) == 20 and p[:4] == b"SLJM" and zlib.crc32(p[:16]) == _u32(p, 16):
            m = _u64(p, 8)
            best = m if best is None else max(best, m)
    return best


def journal_last_seq(path):
    """The highest sequence number in the region written last, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    regions, off = [], 4096
    for r in (0, 1):
        h = data[off:off + 28]
        if len(h) < 28 or h[:4] != b"SLJR" or zlib.crc32(h[:24]) != _u32(h, 24):
            return None
        size = _u64(h, 16)
        regions.append((_u32(h, 12), off, size))
        off = 4096 + size
    gen, base, size = max(regions)
    pos, last = 4096, 0
    while pos + 44 <= size:
        p = base + pos
        if data[p:p + 4] != b"SLJ1" or _u32(data, p + 4) != gen:
            break
        n = 44 + _u32(data, p + 32) + _u32(data, p + 36)
        if pos + n > size or zlib.crc32(data[p:p + 40] + data[p + 44:p + n]) != _u32(data, p + 40):
            break
        last = max(last, _u64(data, p + 8))
        pos += n
        if struct.unpack_from("<H", data, p + 30)[0] & 1:  # the last of a write
            pos = (pos + 4095) // 4096 * 4096
    return last

def queued_id(reply):
    """The queue id of a "250 2.0.0 Ok: queued as ID" reply, or None."""
    if reply.code != 250:
        return None
    m = QUEUED_RE.fullmatch(reply.last)
    return m.group(1) if m else None


def ehlo_keywords(reply):
    """{KEYWORD: "params"} from an EHLO reply (the first line is the greeting)."""
    out = {}
    for line in reply.lines[1:]:
        kw, _, params = line.partition(" ")
        out[kw.upper()] = params
    return out


# ---------------------------------------------------------------------------
# DNS: dnsmasq on a loopback port

class DnsServer:
    """dnsmasq on 127.0.0.1:<free port>, answering only from its records
    (unknown names: NXDOMAIN; nothing forwarded anywhere). Add records, then
    start(); restart() applies records added later. Records go to a conf
    file of our own (never /etc/dnsmasq.conf), where dnsmasq parses quotes."""

    def __init__(self, case=None, port=None):
        self.case = case
        self.port = port or free_port()
        self.options = []
        self.daemon = None
        self.dir = None
        if case is not None:
            case.addCleanup(self.stop)

    @property
    def server(self):
        """The "host:port" for [delivery] dns_servers."""
        return f"127.0.0.1:{self.port}"

    # records (dnsmasq syntax)
    def mx(self, domain, host, preference=10):
        self.options.append(f"mx-host={domain},{host},{preference}")

    def a(self, name, *addrs):
        """A and AAAA (with PTR) records for name."""
        self.options.append(f"host-record={name},{','.join(addrs)}")

    def txt(self, name, *strings):
        quoted = ",".join('"' + s.replace('"', '\\"') + '"' for s in strings)
        self.options.append(f"txt-record={name},{quoted}")

    def address(self, domain, addr):
        """Every name in and under domain resolves to addr."""
        self.options.append(f"address=/{domain}/{addr}")

    def ptr(self, reverse_name, name):
        self.options.append(f"ptr-record={reverse_name},{name}")

    def cname(self, alias, target):
        self.options.append(f"cname={alias},{target}")

    def option(self, opt):
        """Any dnsmasq option, as "name=value" (a conf file line)."""
        self.options.append(opt[2:] if opt.startswith("--") else opt)

    def running(self):
        return self.daemon is not None and self.daemon.alive()

    def start(self):
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.access(exe, os.X_OK):
            raise unittest.SkipTest("dnsmasq is not installed (scripts/deps installs dnsmasq-base)")
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="sluice-dns-")
        conf = os.path.join(self.dir, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("".join(o + "\n" for o in self.options))
        argv = [exe, "--keep-in-foreground", f"--conf-file={conf}",
                "--no-resolv", "--no-hosts", "--no-poll",
                f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--local=/#/", "--log-facility=-",
                "--log-queries", f"--pid-file={self.dir}/dnsmasq.pid"]
        if os.getuid() == 0:
            argv.append("--user=root")
        log_path = os.path.join(self.dir, "dnsmasq.log")
        d = Daemon("dnsmasq", spawn(argv, log_path), log_path)
        self.daemon = d
        if not wait_until(lambda: not d.alive() or udp_bound(self.port)) or not d.alive():
            d.kill9()
            raise AssertionError(f"dnsmasq did not start; log:\n{d.log_tail()}")

    def stop(self):
        if self.daemon is not None:
            self.daemon.stop()  # dnsmasq's exit status is not under test
            self.daemon = None
        if self.dir is not None and not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def restart(self):
        self.stop()
        self.start()

    def log(self):
        return self.daemon.log() if self.daemon else ""

    def query(self, name, qtype="A", timeout=2.0):
        return dns_query(self.port, name, qtype, timeout=timeout)


DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _dns_name(msg, off):
    labels = []
    jumped = False
    end = off
    for _ in range(128):
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            if not jumped:
                end = off + 2
            jumped = True
            off = ptr
            continue
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    if not jumped:
        end = off
    return ".".join(labels), end


def dns_query(port, name, qtype="A", host="127.0.0.1", timeout=2.0):
    """One UDP query. Returns (rcode name, [(type name, value), ...]) where
    value is an address, "pref host" for MX, the joined strings for TXT, a
    name for CNAME/PTR/NS."""
    qid = _rng.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", DNS_TYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(q, (host, port))
        while True:
            msg, _ = s.recvfrom(65535)
            if struct.unpack(">H", msg[:2])[0] == qid:
                break
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _dns_name(msg, off)
        off += 4
    names = {v: k for k, v in DNS_TYPES.items()}
    answers = []
    for _ in range(an):
        _, off = _dns_name(msg, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        tname = names.get(rtype, str(rtype))
        if tname == "A":
            value = socket.inet_ntop(socket.AF_INET, rdata)
        elif tname == "AAAA":
            value = socket.inet_ntop(socket.AF_INET6, rdata)
        elif tname == "MX":
            value = f"{struct.unpack('>H', rdata[:2])[0]} {_dns_name(msg, off + 2)[0]}"
        elif tname == "TXT":
            parts, i = [], 0
            while i < len(rdata):
                parts.append(rdata[i + 1:i + 1 + rdata[i]].decode("utf-8", "replace"))
                i += 1 + rdata[i]
            value = "".join(parts)
        elif tname in ("CNAME", "PTR", "NS"):
            value = _dns_name(msg, off)[0]
        else:
            value = rdata.hex()
        answers.append((tname, value))
        off += rdlen
    return DNS_RCODES.get(flags & 0xF, str(flags & 0xF)), answers


# ---------------------------------------------------------------------------
# the TestCase base

def _code_matches(code, want):
    if isinstance(want, int):
        return code == want
    if isinstance(want, (tuple, list, set)):
        return any(_code_matches(code, w) for w in want)
    return re.fullmatch(want.replace("x", r"\d"), str(code)) is not None


def _enhanced_matches(enh, want):
    if enh is None:
        return False
    pattern = r"\.".join(r"\d{1,3}" if p == "x" else re.escape(p) for p in want.split("."))
    return re.fullmatch(pattern, enh) is not None


class SluiceCase(unittest.TestCase):
    """TestCase with Sluice-aware assertions: a failure shows the server log."""

    maxDiff = None

    def setUp(self):
        super().setUp()
        self._sluices = []

    def sluice(self, start=True, **kw):
        """A new Sluice instance (cleaned up with the test); smtpd started
        unless start=False."""
        s = Sluice(self, **kw)
        self._sluices.append(s)
        if start:
            s.start_smtpd()
        return s

    def connect(self, s, kind="mx", ehlo=True):
        """A raw connection to s, greeted and (by default) after EHLO."""
        c = s.connect(kind)
        self.addCleanup(c.close)
        self.assertReply(c.greeting, 220, None, "greeting")
        if ehlo:
            self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO")
        return c

    def server_logs(self):
        return "\n".join(s.log_tails() for s in getattr(self, "_sluices", []))

    def fail_with_log(self, msg):
        self.fail(f"{msg}\n{self.server_logs()}")

    def assertReply(self, reply, code, enhanced=None, what=""):
        """code: 250, or "5xx", or a tuple of those; enhanced: "5.1.1" or
        "5.x.x" (x: any number) or None (not checked)."""
        ok = _code_matches(reply.code, code) and (
            enhanced is None or (_enhanced_matches(reply.enhanced, enhanced)
                                 and reply.enhanced_everywhere()))
        if not ok:
            want = f"{code}" + (f" {enhanced}" if enhanced else "")
            self.fail_with_log(f"{what + ': ' if what else ''}expected {want}, got: {reply}")
        return reply

    def assertQueued(self, reply, what=""):
        """Asserts "250 2.0.0 Ok: queued as ID" and returns ID."""
        qid = queued_id(reply)
        if qid is None:
            self.fail_with_log(f"{what + ': ' if what else ''}expected "
                               f"'250 2.0.0 Ok: queued as <14 hex>', got: {reply}")
        return qid

    def assertClosed(self, conn, what=""):
        if not conn.closed():
            self.fail_with_log(f"{what + ': ' if what else ''}the server did not close the connection")


def main():
    unittest.main(verbosity=2)
