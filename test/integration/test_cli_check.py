#!/usr/bin/python3
"""`sluice check`: a good config passes ("PATH: OK"); each class of
problem (unknown key, bad value, missing file, unreadable certificate,
mailbox folder that cannot be written) is one "FILE:LINE: message" line and
exit 1; the daemons refuse to start with the same lines; --defaults prints
the key table."""

import os
import re
import subprocess
import tempfile

import sluicetest as st
from sluicetest import SluiceCase

SLUICE = os.path.join(st.BIN, "sluice")


class Check(SluiceCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="sluice-check-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir]))
        self.conf = os.path.join(self.dir, "sluice.conf")
        self.cert, self.key = st.test_cert()
        os.makedirs(os.path.join(self.dir, "mail"))
        self.write_file("mailboxes", f"user@example.test {self.dir}/mail/user\n")
        self.write_file("aliases", "postmaster@example.test user@example.test\n")

    def write_file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def write_conf(self, **over):
        """Writes sluice.conf; returns {key: line number}. over replaces a
        key's whole line ("key = value"), or adds one when new."""
        lines = [
            "[server]",
            "hostname = mx.example.test",
            "spool = spool",
            "[smtpd]",
            f"listen = 127.0.0.1:{st.free_port()} mx",
            "max_recipients = 100",
            f"tls_cert = {self.cert}",
            f"tls_key = {self.key}",
            "spf = off",
            "[domains]",
            "local = example.test",
            "mailboxes = mailboxes",
            "aliases = aliases",
            "[delivery]",
            "tls = may",
        ]
        where = {}
        for key, text in over.items():
            for i, line in enumerate(lines):
                if line.split(" =")[0] == key:
                    lines[i] = text
                    break
            else:
                section = "[smtpd]" if key != "transport" else "[delivery]"
                lines.insert(lines.index(section) + 1, text)
        for i, line in enumerate(lines):
            if "=" in line:
                where.setdefault(line.split(" =")[0], i + 1)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return where

    def check(self, *args, code=None):
        p = subprocess.run([SLUICE, "-c", self.conf, "check", *args], capture_output=True,
                           text=True, timeout=st.TIMEOUT)
        for marker in st.SANITIZER_MARKERS:
            self.assertNotIn(marker, p.stderr)
        if code is not None:
            self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        return p

    def problems(self, p):
        return [line for line in p.stderr.splitlines() if not line.startswith("sluice: ")]

    def assertProblem(self, p, file, line, pattern):
        prefix = f"{file}:{line}: " if line else f"{file}: "
        hits = [x for x in self.problems(p) if x.startswith(prefix)]
        self.assertTrue(hits, f"no problem at {prefix!r}:\n{p.stderr}")
        self.assertTrue(any(re.search(pattern, x[len(prefix):]) for x in hits),
                        f"{prefix}: no message matching {pattern!r}:\n{p.stderr}")

    def test_good_config(self):
        self.write_conf()
        p = self.check(code=0)
        self.assertEqual(p.stdout, f"{self.conf}: OK\n")
        self.assertEqual(p.stderr, "")

    def test_unknown_key(self):
        where = self.write_conf(tls_ciphers="tls_ciphers = HIGH")
        p = self.check(code=1)
        self.assertProblem(p, self.conf, where["tls_ciphers"],
                           r"^unknown key 'tls_ciphers' in \[smtpd\]$")
        self.assertEqual(len(self.problems(p)), 1, p.stderr)
        self.assertIn(f"sluice: {self.conf}: 1 problem", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_bad_values(self):
        where = self.write_conf(max_recipients="max_recipients = lots", spf="spf = maybe")
        p = self.check(code=1)
        self.assertProblem(p, self.conf, where["max_recipients"],
                           r"^max_recipients: bad value 'lots'")
        self.assertProblem(p, self.conf, where["spf"], r"^spf: bad value 'maybe'")
        self.assertEqual(len(self.problems(p)), 2, p.stderr)

    def test_missing_map_file(self):
        where = self.write_conf(aliases="aliases = no-such-map")
        p = self.check(code=1)
        missing = os.path.join(self.dir, "no-such-map")
        self.assertProblem(p, self.conf, where["aliases"],
                           rf"^aliases: cannot open {re.escape(missing)}: No such file or directory$")

    def test_bad_map_line(self):
        self.write_conf()
        self.write_file("mailboxes", f"user@example.test {self.dir}/mail/user\nlonely-key\n")
        p = self.check(code=1)
        self.assertProblem(p, os.path.join(self.dir, "mailboxes"), 2, r".")

    def test_unreadable_certificate(self):
        garbage = self.write_file("cert.pem", "this is not a certificate\n")
        where = self.write_conf(tls_cert=f"tls_cert = {garbage}")
        p = self.check(code=1)
        self.assertProblem(p, self.conf, where["tls_cert"],
                           rf"^tls_cert: cannot load a certificate chain from {re.escape(garbage)}")
        missing = os.path.join(self.dir, "gone.pem")
        where = self.write_conf(tls_cert=f"tls_cert = {missing}")
        p = self.check(code=1)
        self.assertProblem(p, self.conf, where["tls_cert"],
                           rf"^tls_cert: cannot open {re.escape(missing)}: No such file")

    def test_mailbox_not_writable(self):
        self.write_conf()
        blocker = self.write_file("a-file", "")
        self.write_file("mailboxes", f"user@example.test {self.dir}/mail/user\n"
                                     f"bob@example.test {blocker}/bob\n")
        p = self.check(code=1)
        self.assertProblem(p, os.path.join(self.dir, "mailboxes"), 2,
                           rf"^mailbox of bob@example.test: {re.escape(blocker)}/bob cannot be "
                           rf"created: {re.escape(blocker)} is not a folder$")
        if os.getuid() != 0:  # root writes anywhere: only a non-root run sees EACCES
            ro = os.path.join(self.dir, "ro")
            os.makedirs(ro, mode=0o555)
            self.write_file("mailboxes", f"user@example.test {ro}\n")
            p = self.check(code=1)
            self.assertProblem(p, os.path.join(self.dir, "mailboxes"), 1, r"not writable")

    def test_every_problem_at_once(self):
        garbage = self.write_file("cert.pem", "junk\n")
        self.write_conf(bogus="bogus = 1", tls_cert=f"tls_cert = {garbage}",
                        aliases="aliases = nothere")
        p = self.check(code=1)
        self.assertGreaterEqual(len(self.problems(p)), 3, p.stderr)

    def test_daemons_refuse_with_the_same_lines(self):
        where = self.write_conf(aliases="aliases = no-such-map")
        want = self.problems(self.check(code=1))
        self.assertTrue(want)
        for prog in ("sluice-smtpd", "sluice-delivery"):
            p = subprocess.run([os.path.join(st.BIN, prog), "-c", self.conf],
                               capture_output=True, text=True, timeout=st.TIMEOUT)
            self.assertNotEqual(p.returncode, 0, f"{prog} started with a broken config")
            for line in want:
                self.assertIn(line, p.stderr, f"{prog}")
        self.assertTrue(where)

    def test_missing_config(self):
        self.conf = os.path.join(self.dir, "nothere.conf")
        p = self.check(code=1)
        self.assertIn(self.conf, p.stderr)

    def test_defaults(self):
        p = subprocess.run([SLUICE, "check", "--defaults"], capture_output=True, text=True,
                           timeout=st.TIMEOUT)
        self.assertEqual(p.returncode, 0)
        for want in ("[server]", "[smtpd]", "[domains]", "[delivery]", "max_message_size = ",
                     "retry_initial = "):
            self.assertIn(want, p.stdout)


if __name__ == "__main__":
    st.main()
