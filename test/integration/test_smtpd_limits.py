#!/usr/bin/python3
"""sluice-smtpd: bounds on what a client can send: line lengths, message
size, recipients, connections, errors and idle time."""

import time

import sluicetest as st
from sluicetest import SluiceCase


class LineLimits(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)

    def long_command(self, n):
        line = b"NOOP " + b"x" * (n - 5)
        self.c.send(line + b"\r\n")
        self.assertReply(self.c.reply(), 500, "5.5.2", f"{n}-octet command line")
        # exactly one reply for the long line: the next one answers NOOP
        self.assertReply(self.c.cmd("NOOP"), 250, "2.0.0", f"NOOP after a {n}-octet line")

    def test_command_line_2000_octets(self):
        self.long_command(2000)

    def test_command_line_100000_octets(self):
        self.long_command(100000)

    def test_long_line_then_transaction(self):
        self.c.send(b"MAIL FROM:<" + b"a" * 5000 + b"@example.test>\r\n")
        self.assertReply(self.c.reply(), "5xx", "5.x.x", "5000-octet MAIL line")
        qid = self.assertQueued(self.c.transaction("alice@example.test", "user@example.test",
                                                   b"Subject: after\r\n\r\nok\r\n"))
        self.assertEqual(self.s.envelope(qid).sender, "alice@example.test")

    def data(self, body):
        self.c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        self.assertReply(self.c.reply(), 250)
        self.assertReply(self.c.reply(), 250)
        self.assertReply(self.c.reply(), 354)
        self.c.send(body + b".\r\n")
        return self.c.reply()

    def test_text_line_of_1000_octets_accepted(self):
        body = b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n"
        qid = self.assertQueued(self.data(body), "a 1000-octet line (998 + CRLF) is legal")
        self.assertEqual(st.split_received(self.s.message(qid))[1], body)

    def test_text_line_over_1000_octets_refused(self):
        r = self.data(b"Subject: long\r\n\r\n" + b"y" * 1100 + b"\r\nend\r\n")
        self.assertReply(r, "5xx", "5.x.x", "a 1102-octet text line in DATA")
        self.assertEqual(self.s.spool_ids(), [])
        self.assertEqual(self.s.spool_files("incoming"), [])
        self.assertReply(self.c.cmd("NOOP"), 250, "2.0.0", "the session goes on")


class SizeLimits(SluiceCase):
    LIMIT = 100000

    def setUp(self):
        super().setUp()
        self.s = self.sluice(start=False)
        self.s.write_config(smtpd={"max_message_size": self.LIMIT})
        self.s.start_smtpd()
        self.c = self.connect(self.s)

    def test_size_advertised(self):
        r = self.c.cmd("EHLO again.test")
        self.assertEqual(st.ehlo_keywords(r).get("SIZE"), str(self.LIMIT), str(r))

    def test_declared_size_too_big(self):
        self.assertReply(self.c.cmd(f"MAIL FROM:<alice@example.test> SIZE={self.LIMIT + 1}"),
                         552, "5.3.4")
        self.assertReply(self.c.cmd(f"MAIL FROM:<alice@example.test> SIZE={self.LIMIT}"), 250, "2.1.0")

    def test_declared_size_absurd(self):
        self.assertReply(self.c.cmd("MAIL FROM:<alice@example.test> SIZE=99999999999999999999999"),
                         (501, 552), "5.x.x", "SIZE that does not fit 64 bits")

    def test_data_overrun(self):
        body = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * (self.LIMIT // 1000 + 10)
        r = self.c.transaction("alice@example.test", "user@example.test", body, check=False)
        self.assertReply(r, 552, "5.3.4", "message over max_message_size")
        self.assertEqual(self.s.spool_ids(), [])
        self.assertEqual(self.s.spool_files("incoming"), [])
        qid = self.assertQueued(self.c.transaction("alice@example.test", "user@example.test",
                                                   b"Subject: small\r\n\r\nok\r\n"),
                                "the next transaction in the same session")
        self.assertEqual(self.s.spool_ids(), [qid])


class Flood(SluiceCase):
    def test_pipelined_flood_is_bounded(self):
        """A client that sends commands and never reads the replies: the
        server must stop reading once its replies back up, or drop the
        client (bounded memory either way), not queue replies without limit."""
        s = self.sluice()
        c = self.connect(s)
        c.sock.setsockopt(st.socket.SOL_SOCKET, st.socket.SO_RCVBUF, 4096)
        chunk = b"NOOP\r\n" * 10000
        limit = 64 * 1024 * 1024
        sent = 0
        c.sock.settimeout(3)
        try:
            while sent < limit:
                sent += c.sock.send(chunk)
        except (st.socket.timeout, BlockingIOError):
            pass  # the server stopped reading
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server dropped the client
        c.close()
        self.assertLess(sent, limit, f"the server read {sent} octets of NOOPs while the client "
                        "read no reply: its reply queue grows without bound")
        c2 = self.connect(s)
        self.assertReply(c2.cmd("NOOP"), 250, "2.0.0", "the server still serves")


class RecipientLimit(SluiceCase):
    def test_max_recipients(self):
        s = self.sluice(start=False)
        s.mailboxes.update({f"u{i}@example.test": f"{s.maildir_root}/u{i}" for i in range(5)})
        s.write_config(smtpd={"max_recipients": 3})
        s.start_smtpd()
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        for i in range(3):
            self.assertReply(c.cmd(f"RCPT TO:<u{i}@example.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<u3@example.test>"), 452, "4.5.3", "recipient 4 of 3")
        self.assertReply(c.cmd("RCPT TO:<u4@example.test>"), 452, "4.5.3", "recipient 5 of 3")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: r\r\n\r\nx\r\n.\r\n")
        qid = self.assertQueued(c.reply())
        self.assertEqual(s.envelope(qid).recipients, [f"u{i}@example.test" for i in range(3)])


class ConnectionLimits(SluiceCase):
    def test_max_connections_per_ip(self):
        s = self.sluice(start=False)
        s.write_config(smtpd={"max_connections_per_ip": 2})
        s.start_smtpd()
        a = self.connect(s, ehlo=False)
        b = self.connect(s, ehlo=False)
        third = s.connect()
        self.addCleanup(third.close)
        self.assertReply(third.greeting, 421, "4.7.0", "third connection from one address")
        self.assertClosed(third, "after 421")
        self.assertReply(a.cmd("NOOP"), 250, "2.0.0", "the first two stay served")
        self.assertReply(b.cmd("QUIT"), 221)
        self.assertClosed(b)
        # the freed slot becomes usable once the server has seen the close
        deadline = time.monotonic() + st.TIMEOUT
        while True:
            c = s.connect()
            self.addCleanup(c.close)
            if c.greeting.code == 220 or time.monotonic() > deadline:
                break
            c.close()
            time.sleep(0.1)
        self.assertReply(c.greeting, 220, None, "a connection after one closed")

    def test_too_many_bad_commands(self):
        s = self.sluice(start=False)
        s.write_config(smtpd={"max_bad_commands": 5})
        s.start_smtpd()
        c = self.connect(s)
        replies = []
        for i in range(30):
            try:
                r = c.cmd(f"BOGUS{i}")
            except st.ConnectionClosed:
                break
            replies.append(r)
            if r.code == 421:
                break
        self.assertTrue(replies and replies[-1].code == 421,
                        f"no 421 after {len(replies)} bad commands: {replies[-3:]}")
        self.assertLessEqual(len(replies), 7, f"too many bad commands tolerated: {len(replies)}")
        self.assertReply(replies[-1], 421, "4.x.x")
        self.assertClosed(c, "after 421")

    def test_idle_timeout(self):
        s = self.sluice(start=False)
        s.write_config(smtpd={"timeout_command": "2s"})
        s.start_smtpd()
        c = self.connect(s)
        start = time.monotonic()
        r = c.reply(timeout=st.TIMEOUT + 2)
        self.assertReply(r, 421, "4.x.x", "idle client")
        self.assertClosed(c, "after the timeout")
        self.assertGreaterEqual(time.monotonic() - start, 1.5)


if __name__ == "__main__":
    st.main()
