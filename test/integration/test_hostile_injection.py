#!/usr/bin/python3
"""sluice-smtpd: client text never reaches a header or a log line raw
(issue 6, threat "header injection").

What a client says goes to three places: the Received header we prepend
(HELO name, recipient for a single-recipient message), the envelope file
(HELO, sender, recipients, AUTH identity) and the log (HELO, addresses,
the AUTH mechanism). These tests send control characters, CR, LF, NUL,
TAB, DEL, ESC, 8-bit junk and over-long names through each door and check
that they are refused at the door (smtp_parse.c smtp_helo_parse,
smtp_path.c), that what is accepted makes a Received header of whole
CRLF-ended lines no longer than RFC 5322's 998 octets, and that the log
never holds a control character (log.c replaces them; these tests check
the whole log file).
"""

import base64
import email
import email.policy
import os
import shutil
import subprocess

import sluicetest as st
from sluicetest import SluiceCase
from test_hostile_clients import SourceConn

BODY = b"Subject: injection\r\nFrom: alice@example.test\r\n\r\nbody\r\n"
PASSWORD = "s3cret-Pa55"
CONTROLS = set(range(0x20)) - {0x0A}


def b64(raw):
    if isinstance(raw, str):
        raw = raw.encode()
    return base64.b64encode(raw).decode()


class Injection(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice(start=False)
        cfg = {"trusted_networks": "127.0.0.2/32", "allow_plaintext_auth": True}
        if shutil.which("saslpasswd2"):
            sasldb = os.path.join(self.s.dir, "sasldb2")
            subprocess.run(["saslpasswd2", "-f", sasldb, "-u", "example.test", "-c", "-p",
                            "user"], input=PASSWORD.encode(), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            cfg.update({"sasl_db": sasldb, "auth_mechanisms": "PLAIN LOGIN",
                        "auth_fail_limit": 100})
        self.s.write_config(smtpd=cfg)
        self.s.start_smtpd()

    def tearDown(self):
        self.assertLogClean()
        super().tearDown()

    def assertLogClean(self):
        with open(self.s.smtpd().log_path, "rb") as f:
            raw = f.read()
        bad = sorted({b for b in raw if b in CONTROLS or b == 0x7F})
        if bad:
            i = min(raw.find(bytes([b])) for b in bad)
            self.fail(f"control octets {[hex(b) for b in bad]} in the log, e.g. "
                      f"{raw[max(0, i - 120):i + 60]!r}")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(f"the log is not UTF-8: {raw[max(0, e.start - 120):e.end + 60]!r}")

    def received_of(self, qid):
        msg = self.s.message(qid)
        received, rest = st.split_received(msg)
        self.assertEqual(rest, BODY, "the client's message follows the Received header unchanged")
        lines = received.split(b"\r\n")
        self.assertEqual(lines[-1], b"", "the header ends with CRLF")
        for line in lines[:-1]:
            self.assertNotIn(b"\r", line, f"bare CR in {received!r}")
            self.assertNotIn(b"\n", line, f"bare LF in {received!r}")
            self.assertLessEqual(len(line) + 2, 1000, f"a header line over 998 octets: {line!r}")
        for line in lines[1:-1]:
            self.assertTrue(line[:1] in (b" ", b"\t"), f"a new header after Received: {line!r}")
        parsed = email.message_from_bytes(msg, policy=email.policy.compat32)
        self.assertEqual(len(parsed.get_all("Received")), 1)
        self.assertEqual(sorted(parsed.keys()), ["From", "Received", "Subject"])
        return received.decode("utf-8")

    # ---- HELO ----

    def test_helo_with_control_characters_refused(self):
        c = self.connect(self.s, ehlo=False)
        for junk in (b"a\tb", b"a\x00b", b"a\rb", b"a\x1b[31mb", b"a\x7fb", b"a\x0bb",
                     b"a\x0cb", b"a b", b"\xff\xfe", b"\xc0\x80"):
            for verb in (b"EHLO ", b"HELO "):
                self.assertReply(c.cmd(verb + junk), 501, "5.5.4", f"{verb + junk!r}")
            # nothing was remembered: MAIL still wants a HELO
            self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 503, "5.5.1")
        c.close()
        c = self.connect(self.s, ehlo=False)
        c.ehlo("good.client.test")
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        self.assertIn("from good.client.test (unknown [127.0.0.1])", self.received_of(qid))
        self.assertEqual(self.s.envelope(qid).get("helo"), "good.client.test")

    def test_crlf_in_helo_is_two_commands(self):
        """A CR LF inside what the client meant as one HELO ends the line:
        the rest is a second (unknown) command, never part of a header."""
        c = self.connect(self.s, ehlo=False)
        c.send(b"EHLO evil.test\r\nX-Injected: yes\r\n")
        self.assertReply(c.reply(), 250)
        self.assertReply(c.reply(), 500, "5.5.2")
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        received = self.received_of(qid)
        self.assertNotIn("X-Injected", received)
        self.assertNotIn(b"X-Injected", self.s.message(qid))

    def test_longest_helo_makes_a_valid_header(self):
        name = ("h" * 63 + ".") * 3 + "h" * 63  # 255 octets, the SMTP_DOMAIN_MAX
        self.assertEqual(len(name), 255)
        c = self.connect(self.s, ehlo=False)
        self.assertReply(c.cmd("EHLO " + name + "x"), 501, "5.5.4", "a 256-octet HELO name")
        c.ehlo(name)
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        self.assertIn(f"from {name} (unknown [127.0.0.1])", self.received_of(qid))

    def test_helo_with_comment_characters(self):
        """Parentheses, brackets and semicolons are taken (lenient, as
        Postfix): they can make the Received comment confusing to read, but
        not add a line, a header, or hide the real address."""
        c = self.connect(self.s, ehlo=False)
        name = "x)(by.trusted.test[10.0.0.1]);"
        c.ehlo(name)
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        received = self.received_of(qid)
        self.assertIn(f"from {name} (unknown [127.0.0.1])", received)

    def test_utf8_helo(self):
        c = self.connect(self.s, ehlo=False)
        c.ehlo("bücher.example.test")
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        self.assertIn("from bücher.example.test (unknown", self.received_of(qid))

    # ---- addresses ----

    def test_addresses_with_control_characters_refused(self):
        c = self.connect(self.s)
        for addr in (b"a\x01b@example.test", b"a\rb@example.test", b"a\x00b@example.test",
                     b"\"a\x01b\"@example.test", b"\"a\\\x01\"@example.test",
                     b"a@exa\x1bmple.test", b"a\tb@example.test", b"a@example.test\x7f"):
            r = c.cmd(b"MAIL FROM:<" + addr + b">")
            self.assertReply(r, (501, 553), "5.x.x", f"MAIL FROM {addr!r}")
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        for addr in (b"us\rer@example.test", b"user@example.test\x00", b"\"u\x02\"@example.test",
                     b"user@remote\x0b.test"):
            r = c.cmd(b"RCPT TO:<" + addr + b">")
            self.assertReply(r, (501, 553), "5.x.x", f"RCPT TO {addr!r}")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(BODY + b".\r\n")
        qid = self.assertQueued(c.reply())
        self.assertIn("for <user@example.test>", self.received_of(qid))

    def test_quoted_recipient_in_received(self):
        """A relayed (trusted client) recipient with every special character
        a quoted local part may hold: one Received line, no new header."""
        c = SourceConn(self.s.port(), "127.0.0.2")  # trusted_networks
        self.addCleanup(c.close)
        self.assertReply(c.greeting, 220)
        c.ehlo()
        rcpt = '"x\\"y>z;w (c) <d>: X-Injected"@remote.test'
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5", "trusted relay, quoted rcpt")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(BODY + b".\r\n")
        qid = self.assertQueued(c.reply())
        self.assertIn(f"for <{rcpt}>", self.received_of(qid))

    # ---- AUTH ----

    def test_auth_mechanism_name_junk(self):
        """The mechanism name is client text that gets logged: DEL and
        bytes that are not UTF-8 must not reach the log raw (RFC 4954:
        a mechanism name is 1-20 of A-Z, 0-9, '-' and '_')."""
        if not shutil.which("saslpasswd2"):
            self.skipTest("saslpasswd2 is not installed (sasl2-bin)")
        c = self.connect(self.s)
        for mech in (b"PL\x7fAIN", b"\xff\xfe", b"X\x1b[2J", b"\xc3(", b"A\x00B"):
            r = c.cmd(b"AUTH " + mech)
            self.assertReply(r, (501, 504), "5.5.4", f"AUTH {mech!r}")
        self.assertReply(c.cmd("NOOP"), 250)

    # ---- AUTH identities ----

    def test_auth_identity_with_crlf(self):
        if not shutil.which("saslpasswd2"):
            self.skipTest("saslpasswd2 is not installed (sasl2-bin)")
        c = self.connect(self.s)
        for raw in (b"\0user@example.test\r\nX-Injected: yes\0" + PASSWORD.encode(),
                    b"evil\r\nX: y\0user@example.test\0" + PASSWORD.encode(),
                    b"\0us\x1b[2Jer@example.test\0" + PASSWORD.encode()):
            r = c.cmd("AUTH PLAIN " + b64(raw))
            self.assertReply(r, (535, 501, 554), "5.x.x", f"AUTH PLAIN {raw!r}")
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertReply(c.cmd(b64("user@example.test\r\nX-Injected: yes")), 334)
        self.assertReply(c.cmd(b64(PASSWORD)), 535, "5.7.8")
        # the real identity works and is what the envelope records
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0user@example.test\0" + PASSWORD)), 235)
        qid = self.assertQueued(c.transaction("user@example.test", "alice@example.test", BODY))
        self.assertEqual(self.s.envelope(qid).get("auth"), "user@example.test",
                         str(self.s.envelope(qid)))
        self.assertNotIn("X-Injected", self.received_of(qid))


if __name__ == "__main__":
    st.main()
