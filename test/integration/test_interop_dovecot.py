#!/usr/bin/python3
"""Dovecot reads what Sluice delivered (issue 8, scope 1).

The whole path a user takes: a mail client submits on 587 (STARTTLS, then
AUTH against Sluice's sasldb), sluice-delivery writes the message into the
user's Maildir, and a private Dovecot (its own config, base_dir and state_dir
in a temp dir; IMAP and POP3 on free loopback ports) serves that Maildir.
The test reads the message back with imaplib (LOGIN, SELECT, FETCH, STORE
\\Seen: the flag lands in the Maildir file name) and with poplib (USER/PASS,
STAT, RETR, DELE: the file is gone afterwards), byte for byte modulo line
ends (a Maildir file has LF, IMAP and POP3 speak CRLF).

The Sluice daemons drop to the system user "mail" and Dovecot's mail
processes run as that user too: Sluice writes Maildirs 0700/0600 as its own
user, so Dovecot must read them as the same one (docs/dovecot.md).
Needs root (skipped otherwise) and Dovecot (scripts/deps).
"""

import imaplib
import os
import poplib
import re
import time

import interop
import sluicetest as st
from sluicetest import SluiceCase

LOGIN = "user@example.test"
SMTP_PASSWORD = "smtp pass 1"
IMAP_PASSWORD = "imap pass 2"
SENDER = LOGIN

# A body that exercises transparency: a line that starts with a dot, 8-bit
# UTF-8 text, a long line, trailing blanks.
BODY = (
    "From: User <user@example.test>\r\n"
    "To: User <user@example.test>\r\n"
    "Subject: interop with Dovecot\r\n"
    "Message-ID: <interop-dovecot-1@client.test>\r\n"
    "Date: Sun, 22 Nov 2026 20:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hello from Sluice.\r\n"
    ".a line that starts with a dot\r\n"
    "Grüße, ünïcödé \r\n"
    + "x" * 900 + "\r\n"
    "end\r\n"
).encode("utf-8")


class DovecotReadsSluiceMaildirs(SluiceCase):
    def setUp(self):
        super().setUp()
        s = interop.sluice_as(self, listeners=("mx", "submission"))
        sasldb = os.path.join(s.dir, "sasldb2")
        interop.make_sasldb(sasldb, LOGIN, SMTP_PASSWORD)
        interop.give_to_mail_user(sasldb)
        interop.write_config_as(s, smtpd={"sasl_db": sasldb, "auth_mechanisms": "PLAIN LOGIN"})
        s.start_smtpd()
        s.start_delivery()
        self.s = s
        self.dovecot = interop.Dovecot(self, mail_root=s.maildir_root,
                                       users={LOGIN: IMAP_PASSWORD})
        self.dovecot.start()
        self.maildir = s.maildir(LOGIN)

    def deliver(self):
        """Submits BODY on 587 and waits until the Maildir holds it."""
        qid = interop.submit(self.s, LOGIN, SMTP_PASSWORD, SENDER, LOGIN, BODY)
        ok = st.wait_until(lambda: interop.maildir_entries(self.maildir), st.TIMEOUT, 0.02)
        if not ok:
            self.fail_with_log(f"{qid} never reached {self.maildir}")
        entries = interop.maildir_entries(self.maildir)
        self.assertEqual(len(entries), 1, entries.keys())
        (where, data), = entries.items()
        self.assertTrue(where.startswith("new/"), where)
        # what Sluice added in front of the message as submitted:
        # Return-Path, Delivered-To and its Received header (TLS and AUTH)
        text = interop.crlf(data)
        self.assertTrue(text.endswith(BODY), text[:600])
        added = text[:-len(BODY)]
        self.assertTrue(added.startswith(b"Return-Path: <user@example.test>\r\n"
                                         b"Delivered-To: user@example.test\r\n"
                                         b"Received: "), added)
        self.assertIn(b"with ESMTPSA id " + qid.encode(), added)
        return qid, where, data

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.dovecot.imap_port, timeout=st.TIMEOUT)
        self.addCleanup(_quietly, c.logout)
        return c

    def test_imap_fetch_and_flags(self):
        qid, where, data = self.deliver()
        c = self.imap()
        typ, _ = c.login(LOGIN, IMAP_PASSWORD)
        self.assertEqual(typ, "OK")
        typ, d = c.select("INBOX")
        self.assertEqual((typ, d), ("OK", [b"1"]), self.dovecot.log())
        typ, d = c.search(None, "UNSEEN")
        self.assertEqual(d, [b"1"])
        # BODY.PEEK[]: the whole message without setting \Seen
        typ, d = c.fetch("1", "(BODY.PEEK[] RFC822.SIZE FLAGS)")
        self.assertEqual(typ, "OK")
        meta, content = d[0]
        self.assertEqual(content, interop.crlf(data), "IMAP gives back the Maildir file")
        self.assertIn(f"RFC822.SIZE {len(interop.crlf(data))}".encode(), meta)
        self.assertNotIn(b"\\Seen", meta)
        self.assertTrue(content.endswith(BODY))
        # the header part alone, and one header field
        typ, d = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])")
        self.assertIn(b"Subject: interop with Dovecot", d[0][1])
        self.assertIn(b"Message-ID: <interop-dovecot-1@client.test>", d[0][1])
        # STORE \Seen: Dovecot moves the file to cur/ with the S flag in its name
        typ, d = c.store("1", "+FLAGS", "(\\Seen)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"\\Seen", d[0])
        typ, d = c.fetch("1", "(FLAGS)")
        self.assertIn(b"\\Seen", d[0])
        c.close()

        def seen_on_disk():
            names = list(interop.maildir_entries(self.maildir))
            return len(names) == 1 and re.fullmatch(r"cur/.+:2,[A-Z]*S[A-Z]*", names[0])
        self.assertTrue(st.wait_until(seen_on_disk, 5),
                        f"Maildir after STORE \\Seen: {list(interop.maildir_entries(self.maildir))}")
        # the content did not change on the way
        (_, after), = interop.maildir_entries(self.maildir).items()
        self.assertEqual(after, data)
        # a new session sees the flag too
        c2 = self.imap()
        c2.login(LOGIN, IMAP_PASSWORD)
        c2.select("INBOX", readonly=True)
        typ, d = c2.search(None, "SEEN")
        self.assertEqual(d, [b"1"])

    def test_imap_wrong_password(self):
        c = self.imap()
        with self.assertRaises(imaplib.IMAP4.error):
            c.login(LOGIN, SMTP_PASSWORD)  # Sluice's password is not Dovecot's here

    def test_pop3_retr_and_dele(self):
        qid, where, data = self.deliver()
        p = poplib.POP3("127.0.0.1", self.dovecot.pop3_port, timeout=st.TIMEOUT)
        self.addCleanup(_quietly, p.close)
        self.assertTrue(p.user(LOGIN).startswith(b"+OK"))
        self.assertTrue(p.pass_(IMAP_PASSWORD).startswith(b"+OK"))
        count, size = p.stat()
        self.assertEqual(count, 1)
        self.assertEqual(size, len(interop.crlf(data)))
        resp, lines, octets = p.retr(1)
        self.assertTrue(resp.startswith(b"+OK"), resp)
        # poplib undoes the dot-stuffing and splits at CRLF
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", interop.crlf(data))
        self.assertTrue(p.dele(1).startswith(b"+OK"))
        self.assertTrue(p.quit().startswith(b"+OK"))
        self.assertTrue(st.wait_until(lambda: not interop.maildir_entries(self.maildir), 5),
                        f"still in the Maildir after DELE+QUIT: "
                        f"{list(interop.maildir_entries(self.maildir))}")
        # and a new POP3 session finds nothing
        p2 = poplib.POP3("127.0.0.1", self.dovecot.pop3_port, timeout=st.TIMEOUT)
        self.addCleanup(_quietly, p2.close)
        p2.user(LOGIN)
        p2.pass_(IMAP_PASSWORD)
        self.assertEqual(p2.stat()[0], 0)
        p2.quit()

    def test_second_message_while_dovecot_holds_the_folder(self):
        """Delivery and an open IMAP session on one Maildir: the new message
        shows up in the session (NOOP), nothing is lost or duplicated."""
        self.deliver()
        c = self.imap()
        c.login(LOGIN, IMAP_PASSWORD)
        c.select("INBOX")
        body2 = BODY.replace(b"interop-dovecot-1", b"interop-dovecot-2")
        interop.submit(self.s, LOGIN, SMTP_PASSWORD, SENDER, LOGIN, body2)

        def two():
            c.noop()
            typ, d = c.search(None, "ALL")
            return d == [b"1 2"]
        self.assertTrue(st.wait_until(two, st.TIMEOUT, 0.1), self.dovecot.log())
        typ, d = c.fetch("2", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        self.assertIn(b"interop-dovecot-2", d[0][1])


def _quietly(fn):
    try:
        fn()
    except Exception:
        pass


if __name__ == "__main__":
    st.main()
