#!/usr/bin/python3
"""SIGTERM: sluice-smtpd stops accepting, tells idle clients 421 4.3.2,
lets a transaction in flight finish (its message is committed and gets
250), then says 421 to that client too and exits 0."""

import os
import signal
import socket

import sluicetest as st
from sluicetest import SluiceCase


class Shutdown(SluiceCase):
    def test_transaction_in_flight_finishes(self):
        s = self.sluice()
        busy = self.connect(s)
        idle = self.connect(s)
        self.assertReply(busy.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(busy.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(busy.cmd("DATA"), 354)
        busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")

        pid = s.smtpd().pid
        os.kill(pid, signal.SIGTERM)
        self.assertReply(idle.reply(), 421, "4.3.2", "an idle client is told at once")
        self.assertTrue(idle.closed(timeout=5))
        # no new connections
        self.assertTrue(st.wait_until(lambda: not st.tcp_listening(s.port())),
                        "still listening after SIGTERM")

        busy.send(b"second half\r\n.\r\n")
        qid = self.assertQueued(busy.reply())
        self.assertReply(busy.reply(), 421, "4.3.2", "and then told to go")
        self.assertTrue(busy.closed(timeout=5))
        self.assertEqual(s.spool_ids(), [qid])
        self.assertIn(b"second half", s.message(qid))
        s.stop()  # asserts a clean exit 0 with no sanitizer report
        self.assertIn("shutdown: all sessions closed", s.log())


if __name__ == "__main__":
    import unittest
    unittest.main()
