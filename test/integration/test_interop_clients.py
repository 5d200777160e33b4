#!/usr/bin/python3
"""Real mail clients submit through Sluice (issue 8, scope 1).

msmtp (GnuTLS), swaks (Perl, Net::SSLeay) and Python's smtplib (OpenSSL)
each send one message on 587 (STARTTLS, then AUTH) and one on 465 (implicit
TLS, then AUTH), with the mechanism the client picks and with AUTH LOGIN
forced. Every message must reach the Maildir with Sluice's Received header
saying ESMTPSA (TLS and AUTH) and the login in the log. A wrong password
makes each client fail (msmtp exits non-zero, swaks reports the 535).

Skips a client only when its program is not installed (scripts/deps
installs msmtp and swaks).
"""

import os
import re
import shutil
import smtplib
import subprocess
import unittest

import interop
import sluicetest as st
from sluicetest import SluiceCase

LOGIN = "user@example.test"
PASSWORD = "client pass 7"


def body(tag):
    return (f"From: <{LOGIN}>\r\nTo: <{LOGIN}>\r\nSubject: client {tag}\r\n"
            f"Message-ID: <{tag}@client.test>\r\n\r\nsent by {tag}\r\n").encode()


class Clients(SluiceCase):
    def setUp(self):
        super().setUp()
        s = self.sluice(start=False, listeners=("mx", "submission", "smtps"))
        sasldb = os.path.join(s.dir, "sasldb2")
        interop.make_sasldb(sasldb, LOGIN, PASSWORD)
        s.write_config(smtpd={"sasl_db": sasldb, "auth_mechanisms": "PLAIN LOGIN"})
        s.start_smtpd()
        s.start_delivery()
        self.s = s

    def delivered(self, tag, proto="ESMTPSA"):
        """Waits for the message with Subject "client TAG" in the Maildir;
        checks Sluice's Received header."""
        md = self.s.maildir(LOGIN)

        def find():
            for data in interop.maildir_entries(md).values():
                if f"Subject: client {tag}\n".encode() in data:
                    return data
            return None
        if not st.wait_until(lambda: find() is not None, st.TIMEOUT, 0.02):
            self.fail_with_log(f"the message of {tag} never reached {md}")
        data = find()
        received = re.search(rb"(?m)^Received: .*(?:\n\t.*)*", data).group(0)
        self.assertIn(b"(using TLSv1.", received, received)
        self.assertRegex(received, rb"by mx\.example\.test \(Sluice\) with " + proto.encode()
                         + rb" id [0-9A-F]{14}")
        self.assertIn(f"sent by {tag}\n".encode(), data)
        return data

    # ---- msmtp ----

    def msmtp(self, tag, kind, password=PASSWORD, auth="on"):
        exe = shutil.which("msmtp")
        if not exe:
            raise unittest.SkipTest("msmtp is not installed (scripts/deps installs msmtp)")
        conf = os.path.join(self.s.dir, f"msmtprc-{tag}")
        with open(conf, "w") as f:
            f.write(f"""defaults
logfile {self.s.dir}/msmtp-{tag}.log
account sluice
host 127.0.0.1
port {self.s.ports[kind]}
tls on
tls_starttls {"on" if kind == "submission" else "off"}
tls_certcheck off
auth {auth}
user {LOGIN}
password {password}
from {LOGIN}
domain client.test
account default : sluice
""")
        os.chmod(conf, 0o600)
        return subprocess.run([exe, "-C", conf, LOGIN], input=body(tag), capture_output=True,
                              timeout=st.TIMEOUT)

    def test_msmtp_587_and_465(self):
        for kind, auth in (("submission", "on"), ("smtps", "on"), ("submission", "login")):
            tag = f"msmtp-{kind}-{auth}"
            r = self.msmtp(tag, kind, auth=auth)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            self.delivered(tag)
        log = self.s.log()
        self.assertRegex(log, r"AUTH from .*sasl_method=PLAIN, sasl_username=user@example\.test")
        self.assertRegex(log, r"AUTH from .*sasl_method=LOGIN, sasl_username=user@example\.test")

    def test_msmtp_wrong_password(self):
        r = self.msmtp("msmtp-bad", "submission", password="wrong")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"535", r.stderr + r.stdout)
        self.assertRegex(self.s.log(), r"AUTH from .* failed: sasl_method=PLAIN, result=fail")

    # ---- swaks ----

    def swaks(self, tag, kind, password=PASSWORD, auth="PLAIN"):
        exe = shutil.which("swaks")
        if not exe:
            raise unittest.SkipTest("swaks is not installed (scripts/deps installs swaks)")
        argv = [exe, "--server", f"127.0.0.1:{self.s.ports[kind]}",
                "--tls" if kind == "submission" else "--tlsc",
                "--auth", auth, "--auth-user", LOGIN, "--auth-password", password,
                "--from", LOGIN, "--to", LOGIN, "--helo", "client.test",
                "--data", "-", "--timeout", str(int(st.TIMEOUT))]
        return subprocess.run(argv, input=body(tag), capture_output=True, timeout=st.TIMEOUT * 2)

    def test_swaks_587_and_465(self):
        for kind, auth in (("submission", "PLAIN"), ("smtps", "LOGIN")):
            tag = f"swaks-{kind}-{auth}"
            r = self.swaks(tag, kind, auth=auth)
            out = r.stdout.decode(errors="replace")
            self.assertEqual(r.returncode, 0, out)
            self.assertIn("<~  235 2.7.0 Authentication successful", out)
            self.assertRegex(out, r"<~  250 2\.0\.0 Ok: queued as [0-9A-F]{14}")
            self.delivered(tag)

    def test_swaks_wrong_password(self):
        r = self.swaks("swaks-bad", "smtps", password="wrong")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("535 5.7.8", r.stdout.decode(errors="replace"))

    # ---- smtplib ----

    def test_smtplib_587_and_465(self):
        for kind in ("submission", "smtps"):
            tag = f"smtplib-{kind}"
            interop.submit(self.s, LOGIN, PASSWORD, LOGIN, LOGIN, body(tag), kind=kind)
            self.delivered(tag)
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            interop.submit(self.s, LOGIN, "wrong", LOGIN, LOGIN, body("smtplib-bad"))


if __name__ == "__main__":
    st.main()
