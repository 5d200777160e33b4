#!/usr/bin/python3
"""Spool tampering (issue 6): on-disk data is untrusted input (DESIGN.md,
"The spool: what may never happen"). Committed messages are altered behind
the daemons' backs - a flipped envelope byte, a truncated envelope, a
message body changed without changing its size, a message file replaced by
a symlink to a file outside the spool, a FIFO named like an envelope, a
stray file - and then sluice-smtpd restarts and sluice-delivery runs:

  - neither daemon crashes, hangs, or follows the symlink;
  - every damaged message goes to corrupt/ with a log line saying why;
  - the intact messages are delivered;
  - nothing altered is delivered (the envelope's crc32 covers the message
    file: reference/USERS.md section 8, OpenSMTPD's corrupt/ queue).
"""

import os
import time

import sluicetest as st
from sluicetest import SluiceCase


def body(i):
    return f"Subject: m{i}\r\n\r\nbody number {i}\r\n".encode()


class Tampering(SluiceCase):
    def setUp(self):
        super().setUp()
        if not os.access(os.path.join(st.BIN, "sluice-delivery"), os.X_OK):
            self.skipTest(f"sluice-delivery is not built in {st.BIN}")
        self.s = self.sluice()
        self.ids = []
        for i in range(6):
            c = self.connect(self.s)
            self.ids.append(self.assertQueued(
                c.transaction("alice@example.test", "user@example.test", body(i))))
            c.close()

    def q(self, name):
        return self.s.spool_path("queue", name)

    def rewrite(self, name, fn):
        self.s.spool_settle()
        with open(self.q(name), "rb") as f:
            data = bytearray(f.read())
        data = fn(data)
        with open(self.q(name), "wb") as f:
            f.write(data)

    def run_delivery(self, expect_delivered):
        s = self.s
        s.stop()
        s.start_smtpd()  # recovery at start must cope as well
        c = self.connect(s)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "sluice-smtpd serves after the tampering")
        c.close()
        s.start_delivery()
        st.wait_until(lambda: len(s.maildir_messages("user@example.test")) >= expect_delivered
                      and s.spool_ids() == [], timeout=st.TIMEOUT)
        time.sleep(0.3)
        self.assertTrue(s.daemons["sluice-delivery"].alive(), s.log_tails())
        self.assertTrue(s.smtpd().alive(), s.log_tails())
        return s.maildir_messages("user@example.test")

    def delivered_numbers(self, msgs):
        out = []
        for m in msgs:
            for i in range(len(self.ids)):
                if f"Subject: m{i}".encode() in m:
                    out.append(i)
        return sorted(out)

    def test_damaged_envelopes_and_files_quarantined(self):
        ids = self.ids
        # 0: one flipped byte in the envelope
        self.rewrite(ids[0] + ".env", lambda d: d[:40] + bytes([d[40] ^ 0x20]) + d[41:])
        # 1: a truncated envelope
        self.rewrite(ids[1] + ".env", lambda d: d[:len(d) // 2])
        # 2: the message file removed
        os.unlink(self.q(ids[2] + ".msg"))
        # 3: the message file truncated
        self.rewrite(ids[3] + ".msg", lambda d: d[:5])
        # a FIFO named like an envelope, and a stray file
        os.mkfifo(self.q("00000000000001.env"))
        with open(self.q("README"), "w") as f:
            f.write("not a spool file\n")
        msgs = self.run_delivery(2)
        self.assertEqual(self.delivered_numbers(msgs), [4, 5], self.s.log_tails())
        corrupt = self.s.spool_files("corrupt")
        for qid in ids[:4]:
            self.assertTrue(any(n.startswith(qid) for n in corrupt),
                            f"{qid} not in corrupt/: {corrupt}\n{self.s.log_tails()}")
        self.assertEqual(self.s.spool_ids(), [])
        log = self.s.log("sluice-delivery")
        for qid in ids[:4]:
            self.assertRegex(log, rf"{qid}: moved to corrupt/")

    def test_symlinked_message_file(self):
        """queue/ID.msg replaced by a symlink to a file outside the spool:
        never followed, the message quarantined, and both daemons start
        (one bad entry must not stop the server: reference/USERS.md
        section 8, OpenSMTPD OS#1183)."""
        qid = self.ids[0]
        secret = os.path.join(self.s.dir, "secret")
        with open(secret, "wb") as f:
            f.write(b"SECRET " * 100)
        os.unlink(self.q(qid + ".msg"))
        os.symlink(secret, self.q(qid + ".msg"))
        msgs = self.run_delivery(len(self.ids) - 1)
        for m in msgs:
            self.assertNotIn(b"SECRET", m, "a symlinked message file was followed")
        self.assertEqual(self.delivered_numbers(msgs), list(range(1, len(self.ids))))
        self.assertTrue(any(n.startswith(qid) for n in self.s.spool_files("corrupt")),
                        f"{qid} not quarantined: corrupt/ = {self.s.spool_files('corrupt')}")

    def test_altered_body_of_the_same_size_not_delivered(self):
        """The envelope carries the message's size and crc32: a body changed
        in place (bit rot, or a hand edit) must be caught before delivery,
        not delivered as if it were what the client sent."""
        qid = self.ids[0]
        self.rewrite(qid + ".msg", lambda d: d.replace(b"body number 0", b"BODY NUMBER 0"))
        msgs = self.run_delivery(len(self.ids) - 1)
        for m in msgs:
            self.assertNotIn(b"BODY NUMBER 0", m,
                             "a message whose file no longer matches its envelope's crc32 "
                             "was delivered")
        self.assertTrue(any(n.startswith(qid) for n in self.s.spool_files("corrupt")),
                        f"{qid} not quarantined: corrupt/ = {self.s.spool_files('corrupt')}")
        self.assertEqual(self.delivered_numbers(msgs), list(range(1, len(self.ids))))


if __name__ == "__main__":
    st.main()
