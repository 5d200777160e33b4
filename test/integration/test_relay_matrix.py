#!/usr/bin/python3
"""No open relay, proven: every listener type x every client standing
(unauthenticated, authenticated, trusted network) x the recipient forms
that opened relays in older MTAs. Only the documented cases relay:
an authenticated client (any listener) and a client in trusted_networks.
Everyone else reaches local mailboxes only, and the local-looking hacks
(percent hack, bang path, quoted local part, double @) never leave the
local domain: they are unknown users or syntax errors."""

import base64
import os
import socket
import ssl
import subprocess

import sluicetest as st
from sluicetest import SluiceCase

PASSWORD = "relay-Matrix-9"

# (recipient as sent, what a relay would deliver to, or None for local forms)
REMOTE_FORMS = [
    ("user@remote.test", "user@remote.test"),
    ("USER@REMOTE.TEST", "USER@REMOTE.TEST"),
    ("@hop.example.test:user@remote.test", "user@remote.test"),  # source route
    ("@a.test,@b.test:user@remote.test", "user@remote.test"),
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),  # IP literal
    ("user@[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"),
    ("user@sub.example.test", "user@sub.example.test"),  # a subdomain is not local
]
# forms that look local but name a remote mailbox: never relayed, by anyone
HACK_FORMS = [
    "user%remote.test@example.test",
    "remote.test!user@example.test",
    '"user@remote.test"@example.test',
    "user@remote.test@example.test",
    "user@example.test.",
    "user@remote.test.",
    "user@remote.test.@example.test",
    "<user@remote.test>@example.test",
]
LOCAL_OK = ["user@example.test", "USER@EXAMPLE.TEST", "user@Example.Test", "postmaster",
            "Postmaster@example.test"]


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RelayMatrix(SluiceCase):
    def start(self, trusted=""):
        s = self.sluice(start=False, listeners=("mx", "submission", "smtps"))
        db = os.path.join(s.dir, "sasldb2")
        subprocess.run(["saslpasswd2", "-f", db, "-u", "example.test", "-c", "-p", "user"],
                       input=PASSWORD.encode(), check=True, capture_output=True)
        s.write_config(smtpd={"sasl_db": db, "trusted_networks": trusted})
        s.start_smtpd()
        return s

    def session(self, s, kind, auth):
        if kind == "smtps":
            c = st.SmtpConn(s.port("smtps"), greeting=False)
            c.sock = client_ctx().wrap_socket(c.sock)
            self.addCleanup(c.close)
            self.assertReply(c.reply(), 220)
            self.assertReply(c.cmd("EHLO client.test"), 250)
        else:
            c = self.connect(s, kind)
            if auth:
                self.assertReply(c.cmd("STARTTLS"), 220)
                c.starttls(client_ctx())
                self.assertReply(c.cmd("EHLO client.test"), 250)
        if auth:
            cred = base64.b64encode(f"\0user@example.test\0{PASSWORD}".encode()).decode()
            self.assertReply(c.cmd("AUTH PLAIN " + cred), 235, "2.7.0")
        return c

    def outcome(self, c, rcpt):
        """'relay' | 'local' | 'refused' for one recipient in a fresh transaction."""
        self.assertReply(c.cmd("RSET"), 250)
        r = c.cmd("MAIL FROM:<user@example.test>")
        if r.code != 250:
            return "refused-mail"
        r = c.cmd(f"RCPT TO:<{rcpt}>" if not rcpt.startswith("<") else f"RCPT TO:{rcpt}")
        if r.code == 250:
            return "accepted"
        self.assertIn(r.code, (501, 550, 553, 554), f"RCPT {rcpt}: unexpected {r}")
        self.assertTrue(r.enhanced_everywhere(), f"RCPT {rcpt}: no enhanced code: {r}")
        return "refused"

    def check(self, s, kind, auth, may_relay):
        c = self.session(s, kind, auth)
        mail_ok = kind == "mx" or auth
        for rcpt, _ in REMOTE_FORMS:
            got = self.outcome(c, rcpt)
            if not mail_ok:
                self.assertEqual(got, "refused-mail", f"{kind} unauthenticated: MAIL accepted")
                continue
            want = "accepted" if may_relay else "refused"
            self.assertEqual(got, want, f"{kind} auth={auth} may_relay={may_relay}: {rcpt}")
        if not mail_ok:
            return
        for rcpt in HACK_FORMS:
            self.assertEqual(self.outcome(c, rcpt), "refused",
                             f"{kind} auth={auth}: {rcpt} must never be accepted")
        for rcpt in LOCAL_OK:
            self.assertEqual(self.outcome(c, rcpt), "accepted", f"{kind}: local {rcpt}")

    def test_unauthenticated_untrusted(self):
        s = self.start()
        for kind in ("mx", "submission", "smtps"):
            self.check(s, kind, auth=False, may_relay=False)

    def test_authenticated(self):
        s = self.start()
        for kind in ("mx", "submission", "smtps"):
            self.check(s, kind, auth=True, may_relay=True)

    def test_trusted_network(self):
        s = self.start(trusted="127.0.0.0/8")
        self.check(s, "mx", auth=False, may_relay=True)
        # trusted networks do not replace AUTH on submission (RFC 6409)
        self.check(s, "submission", auth=False, may_relay=False)

    def test_other_trusted_network_does_not_cover_loopback(self):
        s = self.start(trusted="192.0.2.0/24 2001:db8::/32")
        self.check(s, "mx", auth=False, may_relay=False)

    def test_relayed_message_keeps_stripped_route(self):
        s = self.start(trusted="127.0.0.0/8")
        c = self.connect(s, "mx")
        self.assertReply(c.cmd("MAIL FROM:<a@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<@hop.example.test:user@remote.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        r = c.cmd("Subject: x\r\n\r\nbody\r\n.")
        qid = self.assertQueued(r)
        self.assertEqual(s.envelope(qid).recipients, ["user@remote.test"])


if __name__ == "__main__":
    import unittest
    unittest.main()
