#!/usr/bin/python3
"""TLS and AUTH with real clients: STARTTLS on mx and submission, implicit
TLS on smtps, the STARTTLS injection case, AUTH PLAIN and LOGIN through
Cyrus SASL's sasldb (good, bad, cancel, throttling), the submission rules
(MAIL before AUTH, sender owned by the login, Message-ID/Date added),
swaks and openssl s_client as clients, and a certificate reload on SIGHUP."""

import base64
import email
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import tempfile
import time

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: tls\r\nFrom: user@example.test\r\n\r\nHello over TLS.\r\n"
PASSWORD = "s3cret-Pa55"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def make_sasldb(path, user, domain, password):
    subprocess.run(["saslpasswd2", "-f", path, "-u", domain, "-c", "-p", user],
                   input=password.encode(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TlsAuthCase(SluiceCase):
    listeners = ("mx", "submission", "smtps")

    def setUp(self):
        super().setUp()
        self.s = self.sluice(start=False, listeners=self.listeners)
        self.sasldb = os.path.join(self.s.dir, "sasldb2")
        make_sasldb(self.sasldb, "user", "example.test", PASSWORD)
        self.s.write_config(smtpd=self.smtpd_config())
        self.s.start_smtpd()

    def smtpd_config(self):
        return {"sasl_db": self.sasldb, "auth_mechanisms": "PLAIN LOGIN",
                "auth_fail_limit": 3, "auth_fail_window": "5m"}

    def tls_conn(self, kind="submission"):
        c = self.connect(self.s, kind)
        self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
        c.starttls(client_ctx())
        self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO under TLS")
        return c

    def submit(self, kind="submission"):
        """smtplib logged in on submission (STARTTLS) or smtps."""
        if kind == "smtps":
            c = smtplib.SMTP_SSL("127.0.0.1", self.s.port("smtps"), local_hostname="client.test",
                                 context=client_ctx(), timeout=st.TIMEOUT)
        else:
            c = smtplib.SMTP("127.0.0.1", self.s.port(kind), local_hostname="client.test",
                             timeout=st.TIMEOUT)
            c.starttls(context=client_ctx())
        self.addCleanup(st._close_quietly, c)
        c.login("user@example.test", PASSWORD)
        return c


class StartTls(TlsAuthCase):
    def test_advertised_before_not_after(self):
        for kind in ("mx", "submission"):
            c = self.connect(self.s, kind, ehlo=False)
            kw = st.ehlo_keywords(self.assertReply(c.cmd("EHLO client.test"), 250))
            self.assertIn("STARTTLS", kw, f"{kind}: STARTTLS offered in plaintext")
            self.assertNotIn("AUTH", kw, f"{kind}: AUTH must not be offered in plaintext")
            self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0")
            c.starttls(client_ctx())
            kw = st.ehlo_keywords(self.assertReply(c.cmd("EHLO client.test"), 250))
            self.assertNotIn("STARTTLS", kw, f"{kind}: STARTTLS offered again under TLS")
            self.assertIn("AUTH", kw, f"{kind}: AUTH offered under TLS")
            self.assertIn("PLAIN", kw["AUTH"].split())

    def test_state_reset_after_starttls(self):
        c = self.connect(self.s, "mx")
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.starttls(client_ctx())
        # RFC 3207 4.2: the EHLO from before TLS is forgotten
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")

    def test_received_header_records_tls(self):
        c = self.tls_conn("mx")
        qid = self.assertQueued(c.transaction("a@remote.test", "user@example.test", BODY))
        env = self.s.envelope(qid)
        self.assertEqual(env.get("proto"), "ESMTPS")
        received = st.split_received(self.s.message(qid))[0].decode()
        self.assertRegex(received, r"using TLSv1\.[23] with cipher \S+ \(\d+ bits\)")
        self.assertIn("with ESMTPS id " + qid, received)

    def test_injection_after_starttls_discarded(self):
        for kind in ("mx", "submission"):
            c = self.connect(self.s, kind)
            # the NOOP rides in the same packet as STARTTLS: it must never run
            c.send(b"STARTTLS\r\nNOOP\r\n")
            r = c.reply()
            self.assertReply(r, 220, "2.0.0")
            c.starttls(client_ctx())
            r = c.cmd("EHLO client.test")
            self.assertEqual(r.code, 250)
            self.assertTrue(len(r.lines) > 1 and r.lines[0].startswith("mx.example.test"),
                            f"{kind}: first reply under TLS is not the EHLO reply: {r}")
            self.assertTrue(c.closed(timeout=0.3) is False)
        self.assertRegex(self.s.log(), r"discarding \d+ bytes pipelined after STARTTLS")

    def test_starttls_twice_refused(self):
        c = self.tls_conn("mx")
        self.assertReply(c.cmd("STARTTLS"), 554, "5.5.1")

    def test_smtps_implicit_tls(self):
        c = smtplib.SMTP_SSL("127.0.0.1", self.s.port("smtps"), local_hostname="client.test",
                             context=client_ctx(), timeout=st.TIMEOUT)
        self.addCleanup(st._close_quietly, c)
        code, msg = c.ehlo()
        self.assertEqual(code, 250)
        self.assertNotIn(b"STARTTLS", msg)
        self.assertIn(b"AUTH", msg)

    def test_plaintext_on_smtps_gets_no_greeting(self):
        c = st.SmtpConn(self.s.port("smtps"), greeting=False)
        self.addCleanup(c.close)
        c.send(b"EHLO client.test\r\n")
        self.assertTrue(c.closed(timeout=5), "plaintext on the smtps port must fail the handshake")

    def test_openssl_s_client(self):
        if not shutil.which("openssl"):
            self.skipTest("openssl not installed")
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.s.port('mx')}",
                            "-starttls", "smtp", "-brief", "-ign_eof"],
                           input=b"QUIT\r\n", capture_output=True, timeout=st.TIMEOUT)
        out = (p.stdout + p.stderr).decode(errors="replace")
        self.assertRegex(out, r"Protocol version: TLSv1\.[23]", out)
        self.assertIn("221 2.0.0", out)

    def test_tls_1_1_refused(self):
        ctx = client_ctx()
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            self.skipTest(f"this Python/OpenSSL cannot offer TLS 1.1: {e}")
        c = self.connect(self.s, "mx")
        self.assertReply(c.cmd("STARTTLS"), 220)
        with self.assertRaises((ssl.SSLError, OSError)):
            c.starttls(ctx)

    def test_sighup_reloads_certificate(self):
        # The files are replaced in place, as certbot renews them.
        d = tempfile.mkdtemp(dir=self.s.dir)
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        shutil.copy(st.test_cert()[0], cert)
        shutil.copy(st.test_cert()[1], key)
        self.s.stop()
        self.s.write_config(smtpd={**self.smtpd_config(), "tls_cert": cert, "tls_key": key})
        self.s.start_smtpd()

        def subject():
            import socket
            raw = socket.create_connection(("127.0.0.1", self.s.port("smtps")), timeout=st.TIMEOUT)
            with client_ctx().wrap_socket(raw) as tls:
                pem = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
            return subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                                  capture_output=True, check=True).stdout.decode()

        self.assertIn("mx.example.test", subject())
        # a broken pair (key in place of the certificate) is not taken: the running one stays
        shutil.copy(key, cert)
        os.kill(self.s.smtpd().pid, signal.SIGHUP)
        self.assertTrue(st.wait_until(lambda: "not read again; the running one stays" in self.s.log()),
                        self.s.log())
        self.assertIn("mx.example.test", subject())
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=reloaded.example.test", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        os.kill(self.s.smtpd().pid, signal.SIGHUP)
        self.assertTrue(st.wait_until(lambda: "reloaded.example.test" in subject(), timeout=5),
                        "new certificate not served after SIGHUP\n" + self.s.log())


class Auth(TlsAuthCase):
    def test_plaintext_auth_refused(self):
        c = self.connect(self.s, "submission")
        self.assertReply(c.cmd("AUTH PLAIN AHVzZXJAZXhhbXBsZS50ZXN0AHg="), 538, "5.7.11")

    def test_mail_before_auth(self):
        for kind in ("submission",):
            c = self.tls_conn(kind)
            self.assertReply(c.cmd("MAIL FROM:<user@example.test>"), 530, "5.7.0")

    def test_plain_and_relay(self):
        c = self.submit()
        c.sendmail("user@example.test", ["someone@remote.test"], BODY)
        env = [e for e in self.s.envelopes().values() if "someone@remote.test" in e.recipients]
        self.assertEqual(len(env), 1, "the relayed message is queued")
        self.assertEqual(env[0].get("auth"), "user@example.test")
        self.assertEqual(env[0].get("proto"), "ESMTPSA")
        self.assertRegex(self.s.log(), r"sasl_method=PLAIN, sasl_username=user@example\.test")

    def test_login_mechanism(self):
        c = self.tls_conn()
        r = c.cmd("AUTH LOGIN")
        self.assertReply(r, 334)
        r = c.cmd(b64("user@example.test"))
        self.assertReply(r, 334)
        self.assertReply(c.cmd(b64(PASSWORD)), 235, "2.7.0")
        self.assertReply(c.cmd("MAIL FROM:<user@example.test>"), 250)

    def test_plain_initial_response_and_empty(self):
        c = self.tls_conn()
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        cred = b64("\0user@example.test\0" + PASSWORD)
        self.assertReply(c.cmd(cred), 235, "2.7.0")

    def test_bad_password(self):
        c = self.tls_conn()
        cred = b64("\0user@example.test\0wrong")
        self.assertReply(c.cmd("AUTH PLAIN " + cred), 535, "5.7.8")
        self.assertReply(c.cmd("MAIL FROM:<user@example.test>"), 530, "5.7.0")

    def test_cancel(self):
        c = self.tls_conn()
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertReply(c.cmd("*"), 501, "5.7.0")
        self.assertReply(c.cmd("NOOP"), 250)

    def test_bad_base64(self):
        c = self.tls_conn()
        self.assertReply(c.cmd("AUTH PLAIN !!!notbase64"), 501, "5.5.2")

    def test_throttling(self):
        c = self.tls_conn()
        bad = "AUTH PLAIN " + b64("\0user@example.test\0nope")
        for _ in range(3):
            self.assertReply(c.cmd(bad), (535, 421))
        self.assertTrue(c.closed(timeout=5), "the client is dropped after the limit")
        # a new connection from the same address is refused at AUTH
        c2 = self.tls_conn()
        self.assertReply(c2.cmd(bad), 421, "4.7.0")
        self.assertRegex(self.s.log(), r"too many AUTH failures|AUTH .* refused: too many")

    def test_sender_must_belong_to_login(self):
        c = self.submit()
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            c.sendmail("alice@example.test", ["bob@example.test"], BODY)
        self.assertEqual(cm.exception.smtp_code, 553)
        self.assertIn(b"5.7.1", cm.exception.smtp_error)

    def test_alias_owned_by_login_may_send(self):
        # abuse@ and postmaster@ are aliases of user@ in the harness defaults
        c = self.submit()
        c.sendmail("abuse@example.test", ["bob@example.test"], BODY)

    def test_message_id_and_date_added(self):
        c = self.submit("smtps")
        c.sendmail("user@example.test", ["bob@example.test"],
                   b"Subject: bare\r\nFrom: user@example.test\r\n\r\nno date, no id\r\n")
        env = [e for e in self.s.envelopes().values() if "bob@example.test" in e.recipients][-1]
        msg = email.message_from_bytes(self.s.message(env.get("id")))
        self.assertIsNotNone(msg["Message-ID"], "Message-ID added on submission")
        self.assertIsNotNone(msg["Date"], "Date added on submission")
        self.assertIn(env.get("id"), msg["Message-ID"])
        self.assertEqual(msg.get_payload(), "no date, no id\r\n")

    def test_existing_message_id_kept(self):
        c = self.submit()
        c.sendmail("user@example.test", ["bob@example.test"],
                   b"Message-ID: <keep@client.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                   b"Subject: x\r\n\r\nbody\r\n")
        env = [e for e in self.s.envelopes().values() if "bob@example.test" in e.recipients][-1]
        msg = email.message_from_bytes(self.s.message(env.get("id")))
        self.assertEqual(msg.get_all("Message-ID"), ["<keep@client.test>"])
        self.assertEqual(len(msg.get_all("Date")), 1)

    def test_auth_on_mx_gives_relay(self):
        c = self.tls_conn("mx")
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0user@example.test\0" + PASSWORD)), 235)
        self.assertQueued(c.transaction("user@example.test", "far@remote.test", BODY))

    def test_swaks_587_and_465(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        for args in (["--server", f"127.0.0.1:{self.s.port('submission')}", "--tls"],
                     ["--server", f"127.0.0.1:{self.s.port('smtps')}", "--tlsc"]):
            p = subprocess.run(["swaks", *args, "--auth", "PLAIN", "--auth-user",
                                "user@example.test", "--auth-password", PASSWORD,
                                "--from", "user@example.test", "--to", "far@remote.test",
                                "--helo", "client.test"],
                               capture_output=True, timeout=60)
            out = p.stdout.decode(errors="replace")
            self.assertEqual(p.returncode, 0, out)
            self.assertRegex(out, r"250 2\.0\.0 Ok: queued as [0-9A-F]{14}")


class PlaintextAuthSwitch(TlsAuthCase):
    listeners = ("submission",)

    def smtpd_config(self):
        return {**super().smtpd_config(), "allow_plaintext_auth": True}

    def test_loopback_plaintext_auth_when_enabled(self):
        c = self.connect(self.s, "submission")
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0user@example.test\0" + PASSWORD)), 235)


if __name__ == "__main__":
    import unittest
    unittest.main()
