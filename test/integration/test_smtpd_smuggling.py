#!/usr/bin/python3
"""sluice-smtpd: SMTP smuggling. Only CRLF.CRLF ends DATA; a bare CR or LF
in DATA is refused, so no other end-of-data look-alike can start a second,
smuggled transaction (SEC Consult, December 2023; Postfix's
smtpd_forbid_bare_newline)."""

import os
import time

import sluicetest as st
from sluicetest import SluiceCase

SMUGGLED_SENDER = "smuggled@evil.test"
OUTER = b"From: alice@example.test\r\nSubject: outer\r\n\r\nouter body"
INNER = (b"MAIL FROM:<" + SMUGGLED_SENDER.encode() + b">\r\n"
         b"RCPT TO:<user@example.test>\r\n"
         b"DATA\r\n"
         b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
         b".\r\n")

# End-of-data look-alikes a lenient server (or one downstream) may accept.
VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-nul-crlf": b"\r\n.\0\r\n",
    "crlf-dot-space-crlf": b"\r\n. \r\n",
}


class Smuggling(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()

    def run_variant(self, name, end):
        c = self.connect(self.s)
        c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
               + OUTER + end + INNER + b"QUIT\r\n")
        replies = c.all_replies()
        queued = [r for r in replies if st.queued_id(r)]
        envs = self.s.envelopes()
        self.assertLessEqual(len(envs), 1, f"{name}: {len(envs)} messages queued; replies: {replies}")
        self.assertLessEqual(len(queued), 1, f"{name}: replies: {replies}")
        for qid, env in envs.items():
            self.assertNotEqual(env.sender, SMUGGLED_SENDER,
                                f"{name}: the smuggled transaction was queued: {env!r}")
            header = st.split_received(self.s.message(qid))[1].split(b"\r\n\r\n")[0]
            self.assertNotIn(b"Subject: smuggled", header,
                             f"{name}: a message with the smuggled header was queued")
        return replies, envs

    def test_variants(self):
        for name, end in VARIANTS.items():
            with self.subTest(variant=name):
                before = set(self.s.spool_ids())
                self.run_variant(name, end)
                # each variant is judged on its own: clear what it left
                for qid in set(self.s.spool_ids()) - before:
                    for ext in (".env", ".msg"):
                        try:
                            os.unlink(self.s.spool_path("queue", qid + ext))
                        except FileNotFoundError:
                            pass

    def test_control_two_real_transactions(self):
        """The same bytes with a real CRLF.CRLF give two messages: proof that
        the variant test would see a smuggled one."""
        c = self.connect(self.s)
        c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
               + OUTER + b"\r\n.\r\n" + INNER + b"QUIT\r\n")
        replies = c.all_replies()
        senders = sorted(e.sender for e in self.s.envelopes().values())
        self.assertEqual(senders, ["alice@example.test", SMUGGLED_SENDER], f"replies: {replies}")


class BareLineEnds(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)

    def data(self, body):
        self.c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        self.assertReply(self.c.reply(), 250)
        self.assertReply(self.c.reply(), 250)
        self.assertReply(self.c.reply(), 354)
        self.c.send(body)
        return self.c.reply()

    def check_refused(self, body, what):
        r = self.data(body)
        self.assertReply(r, "5xx", "5.x.x", what)
        self.assertEqual(self.s.spool_ids(), [], what)
        self.assertEqual(self.s.spool_files("incoming"), [], what)
        self.assertReply(self.c.cmd("NOOP"), 250, "2.0.0", f"session after refusing {what}")

    def test_bare_lf_refused(self):
        self.check_refused(b"Subject: lf\r\n\r\nline one\nline two\r\n.\r\n", "bare LF in DATA")

    def test_bare_cr_refused(self):
        self.check_refused(b"Subject: cr\r\n\r\nline one\rline two\r\n.\r\n", "bare CR in DATA")

    def test_bare_lf_in_header_refused(self):
        self.check_refused(b"Subject: lf\nX-Other: y\r\n\r\nbody\r\n.\r\n", "bare LF in a header")

    def test_crlf_split_across_writes(self):
        """CR at the end of one write and LF at the start of the next is
        still CRLF (the server must not judge line ends per read)."""
        self.c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        for _ in range(2):
            self.assertReply(self.c.reply(), 250)
        self.assertReply(self.c.reply(), 354)
        for piece in (b"Subject: split\r", b"\n\r", b"\nbody\r", b"\n.", b"\r", b"\n"):
            self.c.send(piece)
            time.sleep(0.05)
        qid = self.assertQueued(self.c.reply())
        self.assertEqual(st.split_received(self.s.message(qid))[1], b"Subject: split\r\n\r\nbody\r\n")


if __name__ == "__main__":
    st.main()
