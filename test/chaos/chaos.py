#!/usr/bin/python3
"""chaos.py - the crash test: mail flows in and out while kill -9 hits.

    test/chaos/chaos.py                   the short form (24 kills, about 1 min)
    test/chaos/chaos.py --kills 1000      the long form (about 35 min)
    test/chaos/chaos.py --self-check      also prove that the verifier sees damage
    test/chaos/chaos.py --help            every knob

One run (docs/reliability.md explains the design):

  1. A temporary Sluice instance (test/integration/sluicetest.py): local
     users user@, alice@, bob@example.test with Maildirs, an alias
     team@example.test -> alice, bob; a remote domain remote.test whose MX
     (dnsmasq on a loopback port) is peer_smtpd.py, an aiosmtpd receiver that
     records every message it accepts and refuses bounce@remote.test (so
     DSNs flow too); a sasldb user for submission.
  2. Client processes (this file with --worker) send continuously: through
     mx (unauthenticated; 127.0.0.0/8 is a trusted network, so remote.test
     relays), through submission (STARTTLS + AUTH PLAIN) and through smtps
     (implicit TLS + AUTH). Every message carries a unique token (Subject,
     X-Chaos-Token, every body line) and the length and SHA-256 of its body.
     Each client writes one line per message: the token, its recipients and
     what happened: ACK (250 after the final dot), TEMP/PERM (4xx/5xx after
     it), NOREPLY (the dot went out, no reply came: the server died) or
     NOTSENT (the transaction broke before the dot was sent).
  3. The driver kill -9s sluice-smtpd, sluice-delivery or both at random
     moments, sometimes again while the new process is still starting up,
     and restarts them, waiting until they serve again. Right after each
     kill every committed envelope must be complete and its message file
     the size it names.
  4. The load stops, the runner drains the spool, both daemons get SIGTERM
     (clean exit 0, no sanitizer report), start once more (recovery runs)
     and stop again.
  5. Verification: every (token, destination) of an ACKed message is in its
     Maildir or at the receiver exactly once, complete (body length and
     digest); nothing NOTSENT was delivered; no half-written file in new/ or
     cur/; no tmp/ leftover younger than the last kill of sluice-delivery;
     spool queue/, incoming/ and corrupt/ empty; exactly the DSNs owed (a
     duplicate DSN or a remote duplicate is reported, and fails only when
     one process sent it twice, i.e. without a crash in between).

Prints "chaos: acked N, lost 0, duplicated D (local L, remote R), kills K,
unacked U (delivered V)" and exits 1 if anything that may never happen did.
Environment: SLUICE_BIN, SLUICE_SRC as for the integration tests;
SLUICE_KEEP=1 keeps the run's folder (printed).
"""

import argparse
import base64
import collections
import email
import email.policy
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("SLUICE_SRC") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "test", "integration"))

import sluicetest as st  # noqa: E402

PASSWORD = "chaos-Pa55-word"
LOCAL_DOMAIN = "example.test"
REMOTE_DOMAIN = "remote.test"
USERS = ("user", "alice", "bob")
ALIASES = {
    "team@example.test": "alice@example.test, bob@example.test",
    "postmaster@example.test": "user@example.test",
    "postmaster@localhost": "user@example.test",
    "abuse@example.test": "user@example.test",
}
# Where each recipient's copy must end up: ("local", user) or ("remote", addr).
RCPT_DEST = {
    "user@example.test": [("local", "user")],
    "alice@example.test": [("local", "alice")],
    "bob@example.test": [("local", "bob")],
    "team@example.test": [("local", "alice"), ("local", "bob")],
    "far1@remote.test": [("remote", "far1@remote.test")],
    "far2@remote.test": [("remote", "far2@remote.test")],
    "bounce@remote.test": [],  # the receiver says 550 at RCPT: a DSN goes to the sender
}
BOUNCE_RCPT = "bounce@remote.test"
RCPT_WEIGHTS = {
    "user@example.test": 4, "alice@example.test": 3, "bob@example.test": 3,
    "team@example.test": 1, "far1@remote.test": 3, "far2@remote.test": 2,
    "bounce@remote.test": 1,
}
TOKEN_RE = re.compile(rb"CHAOS-[0-9a-f]{8}-\d+-\d+")
BODY_RE = re.compile(rb"^X-Chaos-Body: (\d+) ([0-9a-f]{64})$", re.M)


SLOW_START = 4.0  # seconds: a restart slower than this is looked at (/proc/PID/stack)


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------
# messages

def pick_size(rng):
    r = rng.random()
    if r < 0.70:
        return rng.randint(200, 2000)
    if r < 0.95:
        return rng.randint(2000, 60000)
    return rng.randint(300000, 1200000)  # spans flushes (SPOOL_MSG_FLUSH_AT)


def make_body(token, size):
    """Lines of about 78 bytes that all name the token; some start with a dot
    (dot-stuffing); LF line ends (the Maildir form; CRLF on the wire)."""
    lines = []
    n = 0
    i = 0
    t = token.decode()
    while n < size:
        lead = "." if i % 37 == 5 else ""
        line = f"{lead}{t} line {i:07d} " + "abcdefghijklmnopqrstuvwxyz0123456789"[:(i * 7) % 36]
        lines.append(line)
        n += len(line) + 1
        i += 1
    lines.append(f"END {t}")
    return ("\n".join(lines) + "\n").encode()


def make_message(token, sender, rcpts, size):
    body = make_body(token, size)
    digest = hashlib.sha256(body).hexdigest()
    t = token.decode()
    head = (f"From: <{sender}>\nTo: {', '.join('<' + r + '>' for r in rcpts)}\n"
            f"Subject: chaos {t}\nMessage-ID: <{t}@client.test>\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n"
            f"X-Chaos-Token: {t}\nX-Chaos-Body: {len(body)} {digest}\n\n").encode()
    return (head + body).replace(b"\n", b"\r\n")


def check_dsn(data):
    """For a DSN (multipart/report): (token of the bounced message, problem
    or None); None when data is not a DSN."""
    norm = data.replace(b"\r\n", b"\n")
    msg = email.message_from_bytes(norm, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return None
    m = TOKEN_RE.search(norm)
    token = m.group(0) if m else None
    boundary = msg.get_boundary()
    if not boundary or (b"\n--" + boundary.encode() + b"--") not in norm:
        return token, "DSN without its closing MIME boundary"
    parts = msg.get_payload()
    if len(parts) < 3 or parts[1].get_content_type() != "message/delivery-status":
        return token, "DSN without its three parts"
    if token is None:
        return None, "DSN without the original's token"
    status = parts[1].as_string()
    if BOUNCE_RCPT not in status or not re.search(r"Status: 5\.\d+\.\d+", status):
        return token, f"DSN for another recipient or status: {status[:300]!r}"
    return token, None


def check_copy(data):
    """(token, problem or None) for a delivered copy (Maildir file or the
    receiver's record), LF or CRLF line ends."""
    data = data.replace(b"\r\n", b"\n")
    i = data.find(b"\n\n")
    if i < 0:
        m = TOKEN_RE.search(data)
        return (m.group(0) if m else None), "no end of header"
    head, body = data[:i + 1], data[i + 2:]
    m = re.search(rb"^X-Chaos-Token: (\S+)$", head, re.M)
    if not m:
        m2 = TOKEN_RE.search(data)
        return (m2.group(0) if m2 else None), "no X-Chaos-Token header"
    token = m.group(1)
    b = BODY_RE.search(head)
    if not b:
        return token, "no X-Chaos-Body header"
    want_len, want_digest = int(b.group(1)), b.group(2).decode()
    if len(body) != want_len:
        return token, f"body is {len(body)} bytes, expected {want_len}"
    if hashlib.sha256(body).hexdigest() != want_digest:
        return token, "body digest differs"
    if not body.endswith(b"END " + token + b"\n"):
        return token, "body does not end with its END line"
    return token, None


# ---------------------------------------------------------------------------
# a client process

class Stop(Exception):
    pass


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def worker_main(cfg):
    """One sending client: connect, send 1-8 messages, QUIT (or just drop
    the connection), again, until SIGTERM. One result line per message."""
    stop = [False]

    def on_term(*_):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    rng = random.Random(cfg["seed"])
    kind, port, wid = cfg["kind"], cfg["port"], cfg["id"]
    sender = cfg["sender"]
    rcpts_all = list(RCPT_WEIGHTS)
    weights = [RCPT_WEIGHTS[r] for r in rcpts_all]
    seq = 0
    ctx = client_ctx()
    pause = cfg.get("pause", 0.0)
    out = open(cfg["out"], "a", buffering=1)

    def record(token, status, rcpts, size, detail, t0):
        detail = detail.replace("\t", " ").replace("\n", " ")[:300]
        out.write(f"{token.decode()}\t{status}\t{','.join(rcpts)}\t{size}\t{t0:.3f}\t"
                  f"{time.time():.3f}\t{detail}\n")

    def connect():
        if kind == "smtps":
            c = st.SmtpConn(port, timeout=cfg["timeout"], greeting=False)
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.example.test")
            c.greeting = c.reply()
        else:
            c = st.SmtpConn(port, timeout=cfg["timeout"])
        if c.greeting.code != 220:
            raise st.ConnectionClosed(f"greeting {c.greeting}")
        r = c.cmd("EHLO client.test")
        if r.code != 250:
            raise st.ConnectionClosed(f"EHLO {r}")
        if kind == "submission":
            r = c.cmd("STARTTLS")
            if r.code != 220:
                raise st.ConnectionClosed(f"STARTTLS {r}")
            c.starttls(ctx)
            r = c.cmd("EHLO client.test")
            if r.code != 250:
                raise st.ConnectionClosed(f"EHLO after TLS {r}")
        if kind in ("submission", "smtps"):
            cred = base64.b64encode(f"\0{sender}\0{cfg['password']}".encode()).decode()
            r = c.cmd("AUTH PLAIN " + cred)
            if r.code != 235:
                raise st.ConnectionClosed(f"AUTH {r}")
        return c

    while not stop[0]:
        try:
            c = connect()
        except (OSError, st.ConnectionClosed, AssertionError):
            time.sleep(0.05)
            continue
        try:
            for _ in range(rng.randint(1, 8)):
                if stop[0]:
                    break
                seq += 1
                token = f"CHAOS-{cfg['run']}-{wid}-{seq}".encode()
                rcpts = sorted(set(rng.choices(rcpts_all, weights, k=rng.choice((1, 1, 1, 2, 3)))))
                size = pick_size(rng)
                data = make_message(token, sender, rcpts, size)
                t0 = time.time()
                dot_sent = False
                try:
                    r = c.cmd(f"MAIL FROM:<{sender}> SIZE={len(data)}")
                    if r.code != 250:
                        record(token, "NOTSENT", rcpts, size, f"MAIL: {r}", t0)
                        break
                    bad = None
                    for rc in rcpts:
                        r = c.cmd(f"RCPT TO:<{rc}>")
                        if r.code != 250:
                            bad = f"RCPT {rc}: {r}"
                    if bad:
                        record(token, "NOTSENT", rcpts, size, bad, t0)
                        c.cmd("RSET")
                        continue
                    r = c.cmd("DATA")
                    if r.code != 354:
                        record(token, "NOTSENT", rcpts, size, f"DATA: {r}", t0)
                        break
                    c.send(st.dot_stuff(data) + b".\r\n")
                    dot_sent = True
                    r = c.reply()
                except (OSError, st.ConnectionClosed, AssertionError) as e:
                    record(token, "NOREPLY" if dot_sent else "NOTSENT", rcpts, size,
                           f"{type(e).__name__}: {e}", t0)
                    break
                status = {2: "ACK", 4: "TEMP", 5: "PERM"}.get(r.code // 100, "PERM")
                record(token, status, rcpts, size, str(r), t0)
                if status != "ACK" and r.code == 421:
                    break
                if pause:
                    time.sleep(rng.uniform(0, pause))
            else:
                if rng.random() < 0.8:
                    try:
                        c.cmd("QUIT")
                    except (OSError, st.ConnectionClosed, AssertionError):
                        pass
        finally:
            c.close()
    out.close()
    return 0


# ---------------------------------------------------------------------------
# the driver

class ChaosError(Exception):
    pass


class Chaos:
    def __init__(self, opts):
        self.o = opts
        self.rng = random.Random(opts.seed)
        self.run_id = "%08x" % random.SystemRandom().getrandbits(32)
        self.kills = collections.Counter()
        self.kill_events = []
        self.workers = []
        self.receiver = None
        self.s = None
        self.last_delivery_kill = 0.0
        self.problems = []
        self.notes = []
        self.odd_lines = []
        self.snapshots = 0
        self.remote_times = collections.defaultdict(list)
        self.slow_starts = []
        self.start_times = collections.defaultdict(list)

    # ---- set-up ----

    def setup(self):
        s = st.Sluice(None, users=USERS, aliases=dict(ALIASES),
                      listeners=("mx", "submission", "smtps"))
        self.s = s
        log(f"run {self.run_id} in {s.dir} (binaries {st.BIN})")
        self.sasldb = os.path.join(s.dir, "sasldb2")
        subprocess.run(["saslpasswd2", "-f", self.sasldb, "-u", LOCAL_DOMAIN, "-c", "-p", "user"],
                       input=PASSWORD.encode(), check=True, stdout=subprocess.DEVNULL)
        self.recv_dir = os.path.join(s.dir, "receiver")
        os.makedirs(self.recv_dir)
        self.recv_port = st.free_port()
        s.dns.mx(REMOTE_DOMAIN, f"mx.{REMOTE_DOMAIN}")
        s.dns.a(f"mx.{REMOTE_DOMAIN}", "127.0.0.1")
        s.write_config(
            smtpd={"trusted_networks": "127.0.0.0/8", "sasl_db": self.sasldb,
                   "auth_mechanisms": "PLAIN LOGIN", "max_connections": 1000,
                   "max_connections_per_ip": 500},
            delivery={"remote_port": self.recv_port, "retry_initial": "2s",
                      "retry_max": "10s"})
        self.start_receiver()
        s.start_smtpd()
        s.start_delivery()
        self.results_dir = os.path.join(s.dir, "clients")
        os.makedirs(self.results_dir)

    def start_receiver(self):
        log_path = os.path.join(self.s.dir, "receiver.log")
        rules = os.path.join(self.s.dir, "receiver.rules")
        with open(rules, "w") as f:
            f.write(f"{BOUNCE_RCPT} 550 5.1.1 no such user here\n")
        argv = [sys.executable, os.path.join(SRC, "test", "integration", "peer_smtpd.py"),
                "--port", str(self.recv_port), "--record", self.recv_dir,
                "--listen", "127.0.0.1:", "--rules", rules]
        p = st.spawn(argv, log_path)
        self.receiver = st.Daemon("receiver", p, log_path)
        if not st.wait_until(lambda: not self.receiver.alive() or "READY" in self.receiver.log()):
            raise ChaosError("peer_smtpd did not start:\n" + self.receiver.log_tail())
        if not self.receiver.alive():
            raise ChaosError("peer_smtpd exited:\n" + self.receiver.log_tail())

    def start_workers(self):
        kinds = ["mx"] * self.o.mx + ["submission"] * self.o.submission + ["smtps"] * self.o.smtps
        self.worker_kind = dict(enumerate(kinds))
        for i, kind in enumerate(kinds):
            cfg = {"id": i, "kind": kind, "port": self.s.port(kind), "run": self.run_id,
                   "seed": self.rng.getrandbits(32), "timeout": self.o.client_timeout,
                   "sender": f"sender{i}@{REMOTE_DOMAIN}" if kind == "mx" else "user@example.test",
                   "password": PASSWORD, "pause": self.o.pause,
                   "out": os.path.join(self.results_dir, f"client-{i}-{kind}.tsv")}
            argv = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)]
            env = dict(os.environ, PYTHONPATH=os.path.join(SRC, "test", "integration"))
            p = st.spawn(argv, os.path.join(self.results_dir, f"client-{i}.log"), env=env)
            self.workers.append(p)
        log(f"{len(kinds)} clients: {', '.join(kinds)}")

    def dsn_dest(self, token):
        wid = int(token.split(b"-")[2])
        kind = self.worker_kind[wid]
        if kind == "mx":
            return ("remote", f"sender{wid}@{REMOTE_DOMAIN}")
        return ("local", "user")

    def stop_workers(self):
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(self.o.client_timeout + 10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.problems.append(f"client pid {p.pid} did not stop on SIGTERM")
            st._children.discard(p)
            if p.returncode not in (0, None):
                self.problems.append(f"client pid {p.pid} exited with {p.returncode}")

    # ---- kills ----

    def daemon(self, prog):
        return self.s.daemons[prog]

    def spawn_raw(self, prog):
        """Starts prog without waiting for it (for a kill during start-up)."""
        path = os.path.join(st.BIN, prog)
        log_path = os.path.join(self.s.dir, f"{prog}.log")
        with open(log_path, "ab") as f:
            f.write(f"---- start {prog} at {time.strftime('%H:%M:%S')} (to be killed at start)\n"
                    .encode())
        p = st.spawn([path, "-c", self.s.conf_path], log_path, cwd=self.s.dir)
        d = st.Daemon(prog, p, log_path)
        self.s.daemons[prog] = d
        return d

    def kill(self, prog, note=""):
        d = self.daemon(prog)
        if not d.alive():
            rc = d.popen.returncode
            raise ChaosError(f"{prog} was already dead (status {rc}) before kill #{sum(self.kills.values()) + 1}; "
                             f"log:\n{d.log_tail(60)}")
        with open(d.log_path, "ab") as f:
            f.write(f"---- kill -9 {prog} pid {d.pid} at {time.strftime('%H:%M:%S')} "
                    f"{time.time():.3f} {note}\n".encode())
        d.kill9()
        self.kills[prog] += 1
        self.kill_events.append((time.time(), prog, note))
        if prog == "sluice-delivery":
            self.last_delivery_kill = time.time()

    def snapshot_check(self, when):
        """Right after a kill: every committed envelope in queue/ is complete
        (end line, CRC) and its message file exists with the size it names."""
        s = self.s
        self.snapshots += 1
        queue = os.path.join(s.spool_view(), "queue")  # as it is: no waiting for checkpoints
        for name in s.spool_files("queue"):
            if not name.endswith(".env"):
                continue
            qid = name[:-4]
            try:
                with open(os.path.join(queue, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue  # delivered and removed meanwhile
            env = st.Envelope(data)
            if not (env.complete and env.crc_ok):
                self.problems.append(f"{when}: queue/{name} is not a complete envelope: {data[-300:]!r}")
                continue
            try:
                size = os.stat(os.path.join(queue, qid + ".msg")).st_size
            except FileNotFoundError:
                if os.path.exists(os.path.join(queue, name)):
                    self.problems.append(f"{when}: queue/{name} without its .msg")
                continue
            if str(size) != env.get("size"):
                self.problems.append(f"{when}: queue/{qid}.msg is {size} bytes, its envelope "
                                     f"says {env.get('size')}")

    def slow_start_probe(self, prog, t0):
        """Runs when a restart takes long: what is the new process doing?"""
        d = self.s.daemons.get(prog)
        if d is None or not d.alive():
            return
        info = []
        for what in ("wchan", "stack", "status"):
            try:
                with open(f"/proc/{d.pid}/{what}") as f:
                    text = f.read()
            except OSError as e:
                text = str(e)
            if what == "status":
                text = " ".join(line for line in text.splitlines()
                                 if line.startswith(("State", "voluntary", "nonvoluntary")))
            info.append(f"{what}: {text.strip()}")
        self.slow_starts.append(f"{prog} pid {d.pid} not ready {time.monotonic() - t0:.1f}s "
                                f"after its start: " + " | ".join(info))

    def restart(self, prog):
        t0 = time.monotonic()
        probe = threading.Timer(SLOW_START, self.slow_start_probe, (prog, t0))
        probe.start()
        try:
            if prog == "sluice-smtpd":
                self.s.start_smtpd()
            else:
                self.s.start_delivery()
        except AssertionError as e:
            raise ChaosError(f"restart of {prog} failed: {e}")
        finally:
            probe.cancel()
        took = time.monotonic() - t0
        self.start_times[prog].append(took)

    def one_kill(self):
        r = self.rng.random()
        if r < 0.12:
            victims = ["sluice-smtpd", "sluice-delivery"]
        elif r < 0.56:
            victims = ["sluice-smtpd"]
        else:
            victims = ["sluice-delivery"]
        for v in victims:
            self.kill(v, "both" if len(victims) == 2 else "")
        self.snapshot_check(f"after kill #{sum(self.kills.values())} ({'+'.join(victims)})")
        time.sleep(self.rng.uniform(0, 0.3))
        for v in victims:
            if self.rng.random() < 0.1:
                # kill again while it starts: recovery or the first scan interrupted
                d = self.spawn_raw(v)
                time.sleep(self.rng.uniform(0.0, 0.08))
                if d.alive():
                    self.kill(v, "during start-up")
                else:
                    raise ChaosError(f"{v} exited at start (status {d.popen.returncode}):\n"
                                     f"{d.log_tail(60)}")
            self.restart(v)

    def kill_loop(self):
        lo, hi = self.o.interval
        t0 = time.monotonic()
        next_report = t0 + 30
        while sum(self.kills.values()) < self.o.kills:
            if self.o.max_time and time.monotonic() - t0 > self.o.max_time:
                self.notes.append(f"--max-time {self.o.max_time}s reached after "
                                  f"{sum(self.kills.values())} kills (asked for {self.o.kills})")
                log(self.notes[-1])
                break
            if self.rng.random() < 0.15:
                time.sleep(self.rng.uniform(0, min(lo, 0.3)))  # a burst: hit a fresh process
            else:
                time.sleep(self.rng.uniform(lo, hi))
            for p in self.workers:
                if p.poll() is not None:
                    raise ChaosError(f"client pid {p.pid} died with {p.returncode}")
            if not self.receiver.alive():
                raise ChaosError("the receiver died:\n" + self.receiver.log_tail())
            self.one_kill()
            if time.monotonic() > next_report:
                next_report += 30
                log(f"{sum(self.kills.values())} kills ({dict(self.kills)}), "
                    f"{self.count_acked()} acked so far, {len(self.s.spool_ids())} in the queue")

    def count_acked(self):
        n = 0
        for name in os.listdir(self.results_dir):
            if name.endswith(".tsv"):
                with open(os.path.join(self.results_dir, name), "rb") as f:
                    n += f.read().count(b"\tACK\t")
        return n

    # ---- the end ----

    def drain(self):
        s = self.s
        for prog in ("sluice-smtpd", "sluice-delivery"):
            if not self.daemon(prog).alive():
                raise ChaosError(f"{prog} is not running at the end:\n{self.daemon(prog).log_tail(60)}")
        t0 = time.monotonic()
        last = None
        next_flush = t0 + 15
        while True:
            ids = s.spool_ids()
            if not ids:
                break
            if len(ids) != last:
                last = len(ids)
                t_last = time.monotonic()
            if time.monotonic() - t_last > self.o.drain_timeout:
                detail = []
                for qid in ids[:10]:
                    try:
                        detail.append(repr(s.envelope(qid)))
                    except OSError as e:
                        detail.append(f"{qid}: {e}")
                nonfinal = 0
                for qid in ids:
                    try:
                        env = s.envelope(qid)
                    except OSError:
                        continue
                    if any(r.get("rcpt-state") not in ("delivered", "failed") for r in env.rcpts):
                        nonfinal += 1
                self.problems.append(
                    f"the spool did not drain: {len(ids)} messages left ({nonfinal} with recipients "
                    f"not final) after {self.o.drain_timeout}s without progress; first envelopes:\n"
                    + "\n".join(detail))
                return
            if time.monotonic() > next_flush:
                next_flush += 15
                st_notify(s, "flush")
            time.sleep(0.25)
        log(f"spool drained in {time.monotonic() - t0:.1f}s")

    def stop_daemons(self, when):
        for prog in ("sluice-smtpd", "sluice-delivery"):
            for p in self.daemon(prog).stop(timeout=60):
                self.problems.append(f"{when}: {p}")

    def final_start(self):
        """Stop cleanly, look at what is left, start again (recovery), check."""
        s = self.s
        self.stop_daemons("clean stop after the drain")
        before = {sub: s.spool_files(sub) for sub in ("incoming", "queue", "corrupt")}
        left = {k: v for k, v in before.items() if v}
        if left:
            self.notes.append(f"spool after the clean stop, before the final start: {left}")
        s.start_smtpd()
        s.start_delivery()
        st.wait_until(lambda: not s.spool_ids(), 30, 0.1)
        time.sleep(1.0)
        after = {sub: s.spool_files(sub) for sub in ("incoming", "queue", "corrupt")}
        for sub in ("incoming", "queue"):
            if after[sub]:
                self.problems.append(f"spool {sub}/ not empty after the final start: {after[sub][:20]}")
        if after["corrupt"]:
            shown = []
            for name in after["corrupt"][:5]:
                with open(s.spool_path("corrupt", name), "rb") as f:
                    shown.append(f"--- corrupt/{name}:\n{f.read(2000)!r}")
            self.problems.append(f"corrupt/ holds {len(after['corrupt'])} files: "
                                 f"{after['corrupt'][:20]}\n" + "\n".join(shown))
        self.stop_daemons("final stop")
        for d in s.daemons.values():
            rep = d.sanitizer_report()
            if rep:
                self.problems.append(f"{d.name}: sanitizer report:\n{rep}")
        for prog in ("sluice-smtpd", "sluice-delivery"):
            text = self.daemon(prog).log()
            for line in text.splitlines():
                low = line.lower()
                if line.startswith("----"):
                    continue
                if any(p in low for p in ("quarantine", "moved to corrupt", "assertion")):
                    self.problems.append(f"{prog} log: {line}")
                elif any(p in low for p in ("error", "fatal", "panic", "failed")):
                    self.odd_lines.append(f"{prog}: {line}")

    # ---- the verifier's own test (--self-check) ----

    def damage(self):
        sent = self.read_results()
        acked = {t.decode() for t, v in sent.items() if v[0] == "ACK"}
        files = []
        for user in USERS:
            d = os.path.join(self.s.maildir_root, user, "new")
            for name in sorted(os.listdir(d)):
                m = re.search(r"CHAOS-[0-9a-f]{8}-\d+-\d+", open(os.path.join(d, name), "rb")
                              .read().decode("utf-8", "replace"))
                if m and m.group(0) in acked and "multipart/report" not in open(
                        os.path.join(d, name), encoding="utf-8", errors="replace").read(3000):
                    files.append(os.path.join(d, name))
                if len(files) >= 3:
                    break
            if len(files) >= 3:
                break
        remote = []
        for name in sorted(os.listdir(self.recv_dir)):
            if name.endswith(".eml"):
                data = open(os.path.join(self.recv_dir, name), "rb").read()
                m = TOKEN_RE.search(data)
                if m and m.group(0).decode() in acked and b"multipart/report" not in data[:3000]:
                    remote.append(os.path.join(self.recv_dir, name))
                    break
        if len(files) < 3 or not remote:
            raise ChaosError("self-check: not enough acknowledged copies to damage")
        os.unlink(files[0])
        d = os.path.dirname(files[1])
        shutil.copy(files[1], os.path.join(d, "1.M1P1Qselfcheck.copy"))
        with open(files[2], "r+b") as f:
            f.truncate(os.path.getsize(files[2]) - 10)
        os.unlink(remote[0])
        log(f"self-check: deleted {files[0]} and {remote[0]}, duplicated {files[1]}, "
            f"cut {files[2]} short")

    def check_damage_found(self):
        m = self.summary
        want = {"lost": 2, "dup_local": 1, "bad_files": 1}
        got = {k: m[k] for k in want}
        if got == want:
            log(f"self-check: the verifier found all the damage: {got}")
            # the damage is ours, not Sluice's
            self.problems = [p for p in self.problems
                             if not p.startswith(("LOST", "local duplicates", "half-written"))]
        else:
            self.problems.append(f"self-check: the verifier found {got}, expected {want}")

    # ---- verification ----

    def read_results(self):
        sent = {}
        for name in sorted(os.listdir(self.results_dir)):
            if not name.endswith(".tsv"):
                continue
            with open(os.path.join(self.results_dir, name), "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        continue
                    tok, status, rcpts, size, t0, t1, detail = line.rstrip(b"\n").split(b"\t", 6)
                    sent[tok] = (status.decode(), rcpts.decode().split(","), int(size),
                                 float(t0), float(t1), detail.decode("utf-8", "replace"))
        return sent

    def collect(self):
        """{token: Counter(dest -> copies)}, bad files, foreign files."""
        got = collections.defaultdict(collections.Counter)
        dsns = collections.defaultdict(collections.Counter)
        bad, foreign = [], []
        tmp_left = []
        for user in USERS:
            md = os.path.join(self.s.maildir_root, user)
            for sub in ("new", "cur"):
                d = os.path.join(md, sub)
                if not os.path.isdir(d):
                    continue
                for name in os.listdir(d):
                    path = os.path.join(d, name)
                    with open(path, "rb") as f:
                        data = f.read()
                    dsn = check_dsn(data)
                    if dsn is not None:
                        tok, problem = dsn
                        if problem:
                            bad.append((path, problem, len(data)))
                        if tok is not None:
                            dsns[tok][("local", user)] += 1
                        continue
                    tok, problem = check_copy(data)
                    if tok is None:
                        foreign.append((path, data[:1500]))
                        continue
                    if problem:
                        bad.append((path, problem, len(data)))
                    got[tok][("local", user)] += 1
            d = os.path.join(md, "tmp")
            if os.path.isdir(d):
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    tmp_left.append((p, os.stat(p).st_mtime, os.stat(p).st_size))
        for name in os.listdir(self.recv_dir):
            if not name.endswith(".eml"):
                continue
            path = os.path.join(self.recv_dir, name)
            with open(path, "rb") as f:
                data = f.read()
            rcpts = []
            try:
                with open(path[:-4] + ".txt", encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if line.startswith("rcpt "):
                            rcpts.append(line[5:].strip())
            except FileNotFoundError:
                bad.append((path, "no .txt record", len(data)))
            dsn = check_dsn(data)
            if dsn is not None:
                tok, problem = dsn
                if problem:
                    bad.append((path, problem, len(data)))
                if tok is not None:
                    for r in rcpts:
                        dsns[tok][("remote", r.lower())] += 1
                continue
            tok, problem = check_copy(data)
            if tok is None:
                foreign.append((path, data[:1500]))
                continue
            if problem:
                bad.append((path, problem, len(data)))
            for r in rcpts:
                got[tok][("remote", r.lower())] += 1
                self.remote_times[(tok, r.lower())].append(os.stat(path).st_mtime)
        return got, dsns, bad, foreign, tmp_left

    def verify(self):
        sent = self.read_results()
        got, dsns, bad, foreign, tmp_left = self.collect()
        by_status = collections.Counter(v[0] for v in sent.values())
        lost, dup_local, dup_remote, phantom, wrong_place = [], [], [], [], []
        unacked = unacked_delivered = 0
        partial_unacked = []
        dsn_lost, dsn_dup, dsn_unexpected = [], [], []
        dsn_expected = 0
        for tok, (status, rcpts, size, t0, t1, detail) in sent.items():
            want = set()
            for r in rcpts:
                want.update(RCPT_DEST[r])
            have = got.get(tok, collections.Counter())
            for dest, n in have.items():
                if dest not in want:
                    wrong_place.append((tok, dest, n))
                elif n > 1:
                    (dup_local if dest[0] == "local" else dup_remote).append((tok, dest, n))
            dsn_have = dsns.get(tok, collections.Counter())
            dsn_want = self.dsn_dest(tok) if BOUNCE_RCPT in rcpts else None
            for dest, n in dsn_have.items():
                if dest != dsn_want:
                    dsn_unexpected.append((tok, status, dest, n))
                elif n > 1:
                    dsn_dup.append((tok, dest, n))
            if status == "ACK":
                for dest in want:
                    if have.get(dest, 0) == 0:
                        lost.append((tok, dest, t0, t1, detail))
                if dsn_want is not None:
                    dsn_expected += 1
                    if dsn_have.get(dsn_want, 0) == 0:
                        dsn_lost.append((tok, dsn_want, t0, t1, detail))
            elif status in ("NOREPLY", "TEMP"):
                unacked += 1
                if have:
                    unacked_delivered += 1
                    if set(have) != want:
                        partial_unacked.append((tok, status, sorted(want), dict(have)))
            elif status in ("NOTSENT", "PERM"):
                if have or dsn_have:
                    phantom.append((tok, status, dict(have), dict(dsn_have), detail))
        extra = [t for t in list(got) + list(dsns) if t not in sent]
        ld = sum(n - 1 for _, _, n in dup_local)
        rd = sum(n - 1 for _, _, n in dup_remote)
        tmp_young = [t for t in tmp_left if t[1] > self.last_delivery_kill + 1.0]
        self.summary = collections.defaultdict(int, {
            "acked": by_status["ACK"], "lost": len(lost), "duplicated": ld + rd,
            "dup_local": ld, "dup_remote": rd, "kills": sum(self.kills.values()),
            "kills_smtpd": self.kills["sluice-smtpd"], "kills_delivery": self.kills["sluice-delivery"],
            "unacked": unacked, "unacked_delivered": unacked_delivered,
            "notsent": by_status["NOTSENT"], "temp": by_status["TEMP"], "perm": by_status["PERM"],
            "noreply": by_status["NOREPLY"], "bad_files": len(bad), "foreign": len(foreign),
            "tmp_leftovers": len(tmp_left), "phantom": len(phantom),
            "copies": sum(sum(c.values()) for c in got.values()),
            "dsn_expected": dsn_expected, "dsn_lost": len(dsn_lost),
            "dsn_dup": sum(n - 1 for _, _, n in dsn_dup),
            "dsns": sum(sum(c.values()) for c in dsns.values()),
        })

        def show(items, n=20):
            return "\n  ".join(repr(x) for x in items[:n]) + ("\n  ..." if len(items) > n else "")

        if lost:
            self.problems.append(f"LOST: {len(lost)} acknowledged copies are nowhere "
                                 f"(token, destination, sent, acked, reply):\n  {show(lost)}")
        if dup_local:
            self.problems.append(f"local duplicates: {ld} extra copies:\n  {show(dup_local)}")
        if dup_remote:
            # Each must be explained by a kill of sluice-delivery right after
            # the first copy arrived (the data may reach the receiver shortly
            # after the kill: it was in the socket's buffer).
            kills = sorted(t for t, prog, _ in self.kill_events if prog == "sluice-delivery")
            gaps = []
            for tok, dest, n in dup_remote:
                times = sorted(self.remote_times.get((tok, dest[1]), []))
                # the kill that made the second copy: the last one before it
                k = max((k for k in kills if k < times[1]), default=None) if len(times) > 1 else None
                if k is not None:
                    gaps.append(k - times[0])
            if gaps:
                gaps.sort()
                self.notes.append(
                    f"remote duplicates: the kill of sluice-delivery came {gaps[len(gaps) // 2] * 1000:.0f} ms "
                    f"after the receiver wrote the first copy (median; max {gaps[-1] * 1000:.0f} ms, "
                    f"min {gaps[0] * 1000:.0f} ms: data already in the socket reached the receiver "
                    f"after the kill); {len(set(t for t, _, _ in dup_remote))} messages, "
                    f"{len(kills)} kills of sluice-delivery")
            # The runner may send again only after a crash: every "status=sent"
            # line of one (queue id, recipient) must come from another process.
            senders = collections.defaultdict(list)
            rx = re.compile(r"sluice-delivery\[(\d+)\]: ([0-9A-F]{14}): to=<([^>]+)>, relay=(?!local|alias)"
                            r".*status=sent")
            for line in self.daemon("sluice-delivery").log().splitlines():
                mm = rx.search(line)
                if mm:
                    senders[(mm.group(2), mm.group(3).lower())].append(mm.group(1))
            same_pid = []
            for tok, dest, n in dup_remote:
                qm = re.search(r"queued as ([0-9A-F]{14})", sent[tok][5])
                if not qm:
                    continue
                pids = senders.get((qm.group(1), dest[1]), [])
                if len(pids) != len(set(pids)):
                    same_pid.append((tok, qm.group(1), dest[1], pids))
            if same_pid:
                self.problems.append(f"remote duplicates sent twice by the same sluice-delivery "
                                     f"process (no crash in between): {show(same_pid)}")
            self.notes.append(f"remote duplicates (inherent to SMTP after a kill between the "
                              f"remote 250 and the envelope update): {rd}:\n  {show(dup_remote)}")
        if phantom:
            self.problems.append(f"delivered though never acknowledged nor completed "
                                 f"(NOTSENT/PERM): {len(phantom)}:\n  {show(phantom)}")
        if dsn_lost:
            self.problems.append(f"LOST DSNs: {len(dsn_lost)} acknowledged messages with a bounced "
                                 f"recipient and no DSN at their sender:\n  {show(dsn_lost)}")
        if dsn_unexpected:
            self.problems.append(f"DSNs nobody should have got: {show(dsn_unexpected)}")
        if dsn_dup:
            made = collections.defaultdict(list)
            rx = re.compile(r"sluice-delivery\[(\d+)\]: ([0-9A-F]{14}): sender non-delivery notification")
            for line in self.daemon("sluice-delivery").log().splitlines():
                mm = rx.search(line)
                if mm:
                    made[mm.group(2)].append(mm.group(1))
            twice = []
            for tok, dest, n in dsn_dup:
                qm = re.search(r"queued as ([0-9A-F]{14})", sent[tok][5])
                pids = made.get(qm.group(1), []) if qm else []
                if len(pids) != len(set(pids)):
                    twice.append((tok, qm.group(1), pids))
            if twice:
                self.problems.append(f"DSNs made twice by the same sluice-delivery process: "
                                     f"{show(twice)}")
            self.notes.append(f"duplicate DSNs (documented: a crash between the DSN inject and "
                              f"the envelope update): {show(dsn_dup)}")
        if wrong_place:
            self.problems.append(f"copies where they do not belong: {show(wrong_place)}")
        if bad:
            self.problems.append(f"half-written or damaged copies: {len(bad)}:\n  {show(bad)}")
        if foreign:
            self.problems.append(f"{len(foreign)} messages without a token (DSNs?):\n  "
                                 + "\n  ".join(f"{p}:\n{d.decode('utf-8', 'replace')}"
                                               for p, d in foreign[:3]))
        if extra:
            self.problems.append(f"tokens delivered that no client sent: {extra[:10]}")
        if by_status["PERM"]:
            perms = [(t, v[5]) for t, v in sent.items() if v[0] == "PERM"]
            self.problems.append(f"{len(perms)} messages refused with 5xx: {show(perms, 5)}")
        if tmp_young:
            self.problems.append(f"{len(tmp_young)} Maildir tmp/ files younger than the last kill "
                                 f"of sluice-delivery: {show(tmp_young)}")
        if partial_unacked:
            self.notes.append(f"unacknowledged messages delivered to only some of their "
                              f"destinations: {show(partial_unacked)}")
        if by_status["TEMP"]:
            temps = collections.Counter(v[5][:60] for v in sent.values() if v[0] == "TEMP")
            self.notes.append(f"4xx after the dot: {dict(temps)}")
        if by_status["ACK"] == 0:
            self.problems.append("no message was acknowledged: the load did not run")
        dupkeys = self.daemon("sluice-delivery").log().count("already in the mailbox")
        self.summary["dup_saved"] = dupkeys
        return self.summary

    def summary_line(self):
        m = self.summary
        return (f"chaos: acked {m['acked']}, lost {m['lost']}, duplicated {m['duplicated']} "
                f"(local {m['dup_local']}, remote {m['dup_remote']}), kills {m['kills']}, "
                f"unacked {m['unacked']} (delivered {m['unacked_delivered']})")

    # ---- the whole run ----

    def run(self):
        t0 = time.monotonic()
        try:
            self.setup()
            self.start_workers()
            time.sleep(self.o.warmup)
            self.kill_loop()
            time.sleep(self.o.cooldown)
        except ChaosError as e:
            self.problems.append(f"aborted: {e}")
        finally:
            self.stop_workers()
        t_load = time.monotonic() - t0
        if not any(p.startswith("aborted") for p in self.problems):
            try:
                self.drain()
                self.final_start()
            except (ChaosError, AssertionError) as e:
                self.problems.append(f"aborted at the end: {e}")
        try:
            if self.o.self_check:
                self.damage()
            self.verify()
            if self.o.self_check:
                self.check_damage_found()
        except Exception as e:  # a broken run must still say why
            self.problems.append(f"verification failed: {type(e).__name__}: {e}")
            if not hasattr(self, "summary"):
                self.summary = collections.defaultdict(int)
        m = self.summary
        log(f"load + kills {t_load:.0f}s, total {time.monotonic() - t0:.0f}s; kills: "
            f"sluice-smtpd {m['kills_smtpd']}, sluice-delivery {m['kills_delivery']}; "
            f"client outcomes: ACK {m['acked']}, NOREPLY {m['noreply']}, TEMP {m['temp']}, "
            f"PERM {m['perm']}, NOTSENT {m['notsent']}; copies found {m['copies']}; "
            f"earlier copies found by delivery key {m['dup_saved']}; "
            f"DSNs expected {m['dsn_expected']}, found {m['dsns']} (lost {m['dsn_lost']}, "
            f"duplicated {m['dsn_dup']}); "
            f"Maildir tmp/ leftovers {m['tmp_leftovers']}")
        for prog, times in sorted(self.start_times.items()):
            times = sorted(times)
            n = len(times)
            self.notes.append(f"{prog}: {n} restarts, ready after median {times[n // 2]:.2f}s, "
                              f"p90 {times[int(n * 0.9)]:.2f}s, max {times[-1]:.2f}s")
        if self.slow_starts:
            self.notes.append(f"{len(self.slow_starts)} slow restarts (> {SLOW_START}s):\n  "
                              + "\n  ".join(self.slow_starts[:10]))
        if self.odd_lines:
            self.notes.append(f"{len(self.odd_lines)} log lines with error/failed (first 10):\n  "
                              + "\n  ".join(self.odd_lines[:10]))
        for n in self.notes:
            log("note: " + n)
        for p in self.problems:
            log("PROBLEM: " + p)
        print(self.summary_line(), flush=True)
        return not self.problems

    def cleanup(self):
        self.stop_workers()
        if self.receiver is not None and self.receiver.alive():
            self.receiver.stop()
        if self.s is not None:
            keep = st.KEEP or bool(self.problems) or self.o.keep
            for d in self.s.daemons.values():
                if d.alive():
                    d.kill9()
            if self.s.dns is not None:
                self.s.dns.stop()
            if keep:
                log(f"files kept in {self.s.dir}")
            else:
                shutil.rmtree(self.s.dir, ignore_errors=True)
            self.s._cleaned = True


def st_notify(s, text):
    path = os.path.join(s.spool, "run", "delivery.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            c.sendto(text.encode(), path)
    except OSError:
        pass


def parse_args(argv=None, short=False):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=24, help="SIGKILLs to send in all (default 24)")
    ap.add_argument("--interval", type=float, nargs=2, default=(0.3, 3.2), metavar=("MIN", "MAX"),
                    help="seconds between kills, uniformly drawn (default 0.3 3.2)")
    ap.add_argument("--max-time", type=float, default=0,
                    help="stop killing after this many seconds even if fewer kills were made")
    ap.add_argument("--mx", type=int, default=2, help="clients on the mx listener (default 2)")
    ap.add_argument("--submission", type=int, default=2, help="clients on submission (default 2)")
    ap.add_argument("--smtps", type=int, default=1, help="clients on smtps (default 1)")
    ap.add_argument("--pause", type=float, default=0.02,
                    help="each client waits up to this many seconds between messages (default 0.02)")
    ap.add_argument("--client-timeout", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--cooldown", type=float, default=1.0)
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="give up draining after this many seconds without progress")
    ap.add_argument("--seed", type=int, default=None, help="random seed of the driver")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder")
    ap.add_argument("--self-check", action="store_true",
                    help="test the verifier: before it runs, delete a local and a remote copy, "
                         "duplicate one, cut one short; the run passes only if all four are found")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    if o.seed is None:
        o.seed = random.SystemRandom().getrandbits(32)
    return o


def run(opts):
    c = Chaos(opts)
    log(f"seed {opts.seed}, {opts.kills} kills, interval {opts.interval[0]}-{opts.interval[1]}s")
    try:
        ok = c.run()
    finally:
        c.cleanup()
    return ok, c


def main(argv=None):
    o = parse_args(argv)
    if o.worker:
        return worker_main(json.loads(o.worker))
    ok, _ = run(o)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
