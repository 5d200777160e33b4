#!/usr/bin/python3
"""Privilege separation (issue 6): started as root, sluice-smtpd binds its
listeners, then drops to [server] user (setgroups, setgid, setuid, checked)
before it reads a client byte; sluice-delivery runs as that user and owns
the Maildirs it writes; spool files are 0600, the mail folders 0700 (the spool
root and run/ are 0711 so local users reach run/submit.sock); and a daemon
never goes on as root when a user is configured: an unknown user, a user
with uid 0, and a setuid(2) that fails (CAP_SETUID removed with setpriv)
all stop it at start with a message and a non-zero exit.

Needs root: skipped otherwise. The user is "sluicetest" (a system user the
test creates if missing and removes afterwards only if it created it), or
"nobody" when useradd is not possible.
"""

import grp
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
import unittest

import sluicetest as st
from sluicetest import SluiceCase

USER = "sluicetest"
BODY = b"Subject: dropped\r\n\r\nWritten by an unprivileged daemon.\r\n"


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def free_low_port(taken=()):
    """A free loopback TCP port below 1024 (only root may bind it), not one
    of taken (a port found free a moment ago is still free now)."""
    ports = [p for p in range(600, 1000) if p not in taken]
    random.shuffle(ports)
    for p in ports:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise unittest.SkipTest("no free port below 1024 on 127.0.0.1")


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PrivDropCase(SluiceCase):
    user = None
    created = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if os.geteuid() != 0:
            raise unittest.SkipTest("privilege dropping is tested only when the suite runs as "
                                    "root (it needs to start the daemons as root)")
        try:
            pwd.getpwnam(USER)
            cls.user = USER
        except KeyError:
            r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                "/usr/sbin/nologin", USER], capture_output=True, text=True)
            if r.returncode == 0:
                cls.user = USER
                PrivDropCase.created = True
            else:
                cls.user = "nobody"
        pw = pwd.getpwnam(cls.user)
        cls.uid, cls.gid = pw.pw_uid, pw.pw_gid
        if cls.uid == 0:
            raise unittest.SkipTest(f"user {cls.user} has uid 0")

    def sluice_as_user(self, listeners=("mx",), low_ports=False, **server):
        s = self.sluice(start=False, listeners=listeners)
        os.chmod(s.dir, 0o711)  # the user must reach DIR/spool; mkdtemp made DIR 0700
        if low_ports:
            s.ports = {}
            for kind in listeners:
                s.ports[kind] = free_low_port(s.ports.values())
        s.write_config(server={"user": self.user, **server})
        return s

    def run_refused(self, s, wrap=()):
        """Runs sluice-smtpd directly; it must exit by itself, non-zero.
        Returns (status, output)."""
        if s.dns is not None and not s.dns.running():
            s.dns.start()
        argv = list(wrap) + [os.path.join(st.BIN, "sluice-smtpd"), "-c", s.conf_path]
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=st.TIMEOUT, preexec_fn=st._die_with_parent)
        except subprocess.TimeoutExpired:
            self.fail(f"sluice-smtpd kept running ({argv})")
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, f"sluice-smtpd exited 0:\n{out}")
        for port in s.ports.values():
            self.assertFalse(st.tcp_listening(port), f"port {port} still listening:\n{out}")
        return r.returncode, out


def _remove_user():
    if PrivDropCase.created:
        subprocess.run(["userdel", USER], capture_output=True)
        PrivDropCase.created = False


unittest.addModuleCleanup(_remove_user)


class SmtpdDrop(PrivDropCase):
    def test_ids_groups_and_capabilities_after_start(self):
        s = self.sluice_as_user()
        s.start_smtpd()
        status = proc_status(s.smtpd().pid)
        self.assertEqual(status["Uid"], [str(self.uid)] * 4, "Uid: real, effective, saved, fs")
        self.assertEqual(status["Gid"], [str(self.gid)] * 4, "Gid: real, effective, saved, fs")
        self.assertEqual(status["Groups"], [str(self.gid)], "supplementary groups")
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(status[cap][0], 16), 0, f"{cap} {status[cap]}")
        self.assertNotIn("warning: running as root", s.log())
        # every thread, not just the main one (the thread pool is started later)
        for tid in os.listdir(f"/proc/{s.smtpd().pid}/task"):
            t = proc_status(f"{s.smtpd().pid}/task/{tid}")
            self.assertEqual(t["Uid"], [str(self.uid)] * 4, f"thread {tid}")

    def test_privileged_ports_serve_and_spool_is_owned(self):
        s = self.sluice_as_user(listeners=("mx", "submission"), low_ports=True)
        s.start_smtpd()
        for kind, port in s.ports.items():
            self.assertLess(port, 1024)
            c = self.connect(s, kind)
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0", f"{kind} on port {port}")
        c = self.connect(s, "mx")
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        # STARTTLS on the low port, after the drop
        c = self.connect(s, "submission")
        self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0")
        c.starttls(client_ctx())
        self.assertReply(c.cmd("EHLO client.test"), 250)

        def check(path, mode):
            st_ = os.lstat(path)
            self.assertEqual((st_.st_uid, st_.st_gid), (self.uid, self.gid), f"owner of {path}")
            self.assertEqual(stat.S_IMODE(st_.st_mode), mode,
                             f"{path}: mode {stat.S_IMODE(st_.st_mode):o}, want {mode:o}")

        # The way to run/submit.sock is search-only for local users (0711);
        # the folders that hold mail are the daemon user's alone.
        check(s.spool, 0o711)
        check(os.path.join(s.spool, "run"), 0o711)
        for sub in ("incoming", "queue", "corrupt"):
            check(os.path.join(s.spool, sub), 0o700)
        check(s.spool_path("queue", qid + ".env"), 0o600)
        check(s.spool_path("queue", qid + ".msg"), 0o600)
        sock = s.spool_path("run", "submit.sock")
        self.assertEqual(os.lstat(sock).st_uid, self.uid, "owner of run/submit.sock")
        self.assertEqual(stat.S_IMODE(os.lstat(sock).st_mode) & 0o666, 0o666,
                         "every local user may submit through run/submit.sock")
        for root, dirs, files in os.walk(s.spool):
            for name in dirs + files:
                st_ = os.lstat(os.path.join(root, name))
                self.assertEqual(st_.st_uid, self.uid, f"{root}/{name} not owned by {self.user}")
                if stat.S_ISREG(st_.st_mode):
                    self.assertEqual(stat.S_IMODE(st_.st_mode) & 0o077, 0,
                                     f"{root}/{name} readable by others")

    def test_sighup_after_drop(self):
        """A reload after the drop runs as the user: it may no longer read a
        root-only key (the test certificate's folder is 0700 root), and
        must then keep the old certificate and go on serving."""
        s = self.sluice_as_user(listeners=("mx",))
        # as in production, the user owns the Maildirs' folder: the reload's
        # check (run as the user now) sees that it can make a new Maildir
        os.chown(s.maildir_root, self.uid, -1)
        s.start_smtpd()
        # the admin adds a mailbox and reloads: that must not hinge on the key
        s.mailboxes["carol@example.test"] = os.path.join(s.maildir_root, "carol")
        s.write_maps()
        os.kill(s.smtpd().pid, signal.SIGHUP)
        self.assertTrue(st.wait_until(lambda: "in force for new sessions" in s.log(), timeout=5),
                        s.log_tails())
        self.assertIn("not read again; the running one stays", s.log())
        self.assertTrue(s.smtpd().alive(), s.log_tails())
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<carol@example.test>"), 250, None, "the new mailbox")
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0")
        c.starttls(client_ctx())
        self.assertReply(c.cmd("EHLO client.test"), 250)
        self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))


class Refusals(PrivDropCase):
    def test_unknown_user(self):
        s = self.sluice(start=False, dns=False)
        s.write_config(server={"user": "no-such-user-sluice"})
        rc, out = self.run_refused(s)
        self.assertIn("no-such-user-sluice", out)
        self.assertRegex(out, r"no such user")

    def test_user_with_uid_0(self):
        """user = root: the drop 'succeeds' and leaves uid 0, which the
        check after setuid catches (root must be gone for good)."""
        s = self.sluice(start=False, dns=False)
        s.write_config(server={"user": "root"})
        rc, out = self.run_refused(s)
        self.assertRegex(out, r"privilege drop to root did not hold|uid 0")

    def test_failing_setuid_never_runs_as_root(self):
        """Without CAP_SETUID (removed from the bounding and inheritable
        sets by setpriv) setuid(2) fails as it would under a broken
        seccomp policy or a user namespace: the daemon must stop."""
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) is not installed")
        for cap in ("setuid", "setgid"):
            s = self.sluice_as_user()
            rc, out = self.run_refused(s, ["setpriv", f"--bounding-set=-{cap}",
                                           f"--inh-caps=-{cap}", "--"])
            self.assertRegex(out, rf"cannot drop privileges to {self.user}: Operation not "
                             rf"permitted", f"without CAP_{cap.upper()}")

    def test_spool_left_by_a_root_run(self):
        """A spool made by an earlier run as root: the daemon either takes
        it over or refuses with a message naming the spool, never runs on
        as root and never half-works."""
        s = self.sluice(start=False)
        os.chmod(s.dir, 0o711)
        s.start_smtpd()
        c = self.connect(s)
        self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        c.close()
        s.stop()
        s.write_config(server={"user": self.user})
        argv = [os.path.join(st.BIN, "sluice-smtpd"), "-c", s.conf_path]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, preexec_fn=st._die_with_parent)
        try:
            out, _ = p.communicate(timeout=3)
            out = out.decode("utf-8", "replace")
            self.assertNotEqual(p.returncode, 0, out)
            self.assertIn(s.spool, out, "the refusal names the spool")
        except subprocess.TimeoutExpired:
            # it runs: then as the user, and it serves
            status = proc_status(p.pid)
            self.assertEqual(status["Uid"], [str(self.uid)] * 4)
            c = self.connect(s)
            self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
            p.terminate()
            p.communicate(timeout=st.TIMEOUT)
            self.assertEqual(p.returncode, 0)


class DeliveryDrop(PrivDropCase):
    def test_delivery_runs_as_user_and_owns_maildirs(self):
        if not os.access(os.path.join(st.BIN, "sluice-delivery"), os.X_OK):
            self.skipTest(f"sluice-delivery is not built in {st.BIN}")
        s = self.sluice_as_user()
        os.chown(s.maildir_root, self.uid, self.gid)  # the admin gives the user its Maildirs
        s.start_smtpd()
        d = s.start_delivery()
        status = proc_status(d.pid)
        self.assertEqual(status["Uid"], [str(self.uid)] * 4, "sluice-delivery Uid")
        self.assertEqual(status["Gid"], [str(self.gid)] * 4, "sluice-delivery Gid")
        self.assertEqual(status["Groups"], [str(self.gid)])
        c = self.connect(s)
        self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        self.assertTrue(st.wait_until(lambda: s.maildir_messages("user@example.test"),
                                      timeout=st.TIMEOUT),
                        f"not delivered\n{s.log_tails()}")
        md = s.maildir("user@example.test")
        for root, dirs, files in os.walk(md):
            for name in [""] + dirs + files:
                path = os.path.join(root, name)
                st_ = os.lstat(path)
                self.assertEqual((st_.st_uid, st_.st_gid), (self.uid, self.gid), path)
                self.assertEqual(stat.S_IMODE(st_.st_mode) & 0o077, 0,
                                 f"{path} open to others: {stat.S_IMODE(st_.st_mode):o}")

    def test_delivery_started_as_the_user_ignores_a_root_only_key(self):
        """The shipped unit starts sluice-delivery as User=sluice. It never
        uses the TLS certificate, so a key only root can read (the test
        certificate's folder is 0700 root, like /etc/letsencrypt) must not
        stop it from starting or reloading."""
        if not os.access(os.path.join(st.BIN, "sluice-delivery"), os.X_OK):
            self.skipTest(f"sluice-delivery is not built in {st.BIN}")
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) is not installed")
        s = self.sluice_as_user()
        os.chown(s.maildir_root, self.uid, self.gid)
        key = s.cfg("smtpd", "tls_key")
        self.assertFalse(self.user_can_read(key), f"{key} should be root-only for this test")
        s.start_smtpd()  # as root: it drops after reading the key
        spool = s.spool
        for root, dirs, files in os.walk(spool):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)
        d = s._start("sluice-delivery",
                     lambda: st.unix_bound(os.path.join(spool, "run", "delivery.sock")),
                     wrap=["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                           "--clear-groups"])
        self.assertEqual(proc_status(d.pid)["Uid"], [str(self.uid)] * 4)
        c = self.connect(s)
        self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        self.assertTrue(st.wait_until(lambda: s.maildir_messages("user@example.test"),
                                      timeout=st.TIMEOUT), f"not delivered\n{s.log_tails()}")
        os.kill(d.pid, signal.SIGHUP)
        self.assertTrue(st.wait_until(lambda: "reload: maps reloaded" in s.log("sluice-delivery"),
                                      timeout=st.TIMEOUT), s.log_tails())

    def user_can_read(self, path):
        p = subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                            "--clear-groups", "cat", path], capture_output=True)
        return p.returncode == 0


if __name__ == "__main__":
    st.main()
