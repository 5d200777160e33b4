#!/usr/bin/python3
"""sluice-smtpd: PIPELINING (RFC 2920) and CHUNKING / BDAT (RFC 3030)."""

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: pipelined\r\n\r\nHello.\r\n"


class Pipelining(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)

    def test_one_write_gets_replies_in_order(self):
        self.c.send(b"MAIL FROM:<alice@example.test>\r\n"
                    b"RCPT TO:<user@example.test>\r\n"
                    b"RCPT TO:<nobody@example.test>\r\n"
                    b"RCPT TO:<bob@example.test>\r\n"
                    b"DATA\r\n")
        mail, r1, r2, r3, data = self.c.replies(5)
        self.assertReply(mail, 250, "2.1.0", "MAIL")
        self.assertReply(r1, 250, "2.1.5", "RCPT user")
        self.assertReply(r2, 550, "5.1.1", "RCPT nobody")
        self.assertReply(r3, 250, "2.1.5", "RCPT bob")
        self.assertReply(data, 354, None, "DATA")
        self.c.send(BODY + b".\r\n")
        qid = self.assertQueued(self.c.reply())
        self.assertEqual(self.s.envelope(qid).recipients, ["user@example.test", "bob@example.test"])

    def test_whole_transactions_in_one_write(self):
        """Clients may (and do) send the body without waiting for 354; two
        full transactions and QUIT in one write give two messages."""
        self.c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
                    + b"Subject: one\r\n\r\none\r\n.\r\n"
                    + b"MAIL FROM:<bob@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
                    + b"Subject: two\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
        replies = self.c.all_replies()
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250, 250, 250, 354, 250, 221],
                         f"replies: {replies}")
        ids = [self.assertQueued(replies[3]), self.assertQueued(replies[7])]
        senders = {self.s.envelope(i).sender for i in ids}
        self.assertEqual(senders, {"alice@example.test", "bob@example.test"})

    def test_rset_and_noop_pipelined(self):
        self.c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\n"
                    b"RSET\r\nNOOP\r\nMAIL FROM:<bob@example.test>\r\nRCPT TO:<alice@example.test>\r\n"
                    b"DATA\r\n")
        codes = [r.code for r in self.c.replies(7)]
        self.assertEqual(codes, [250, 250, 250, 250, 250, 250, 354])
        self.c.send(BODY + b".\r\n")
        env = self.s.envelope(self.assertQueued(self.c.reply()))
        self.assertEqual((env.sender, env.recipients), ("bob@example.test", ["alice@example.test"]))

    def test_refused_mail_makes_later_commands_fail_in_order(self):
        self.c.send(b"MAIL FROM:<bad address>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nNOOP\r\n")
        mail, rcpt, data, noop = self.c.replies(4)
        self.assertReply(mail, 501, "5.1.7")
        self.assertReply(rcpt, 503, "5.5.1")
        self.assertReply(data, 503, "5.5.1")
        self.assertReply(noop, 250, "2.0.0")


class SlowClient(SluiceCase):
    def test_byte_at_a_time(self):
        """Every byte in its own write: the command reader and the DATA
        reader must keep their state across reads."""
        s = self.sluice()
        c = self.connect(s)
        c.sock.setsockopt(st.socket.IPPROTO_TCP, st.socket.TCP_NODELAY, 1)
        script = (b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
                  b"Subject: slow\r\n\r\n..stuffed\r\n.\r\n")
        for i in range(len(script)):
            c.send(script[i:i + 1])
        self.assertEqual([r.code for r in c.replies(3)], [250, 250, 354])
        qid = self.assertQueued(c.reply())
        self.assertEqual(st.split_received(s.message(qid))[1], b"Subject: slow\r\n\r\n.stuffed\r\n")


class Chunking(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)
        self.c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\n")
        self.assertReply(self.c.reply(), 250, "2.1.0")
        self.assertReply(self.c.reply(), 250, "2.1.5")

    def bdat(self, chunk, last=False):
        self.c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
        return self.c.reply()

    def stored_body(self, qid):
        return st.split_received(self.s.message(qid))[1]

    def test_chunks_stored_byte_exact(self):
        chunks = [b"Subject: chunked\r\n", b"\r\nfirst part, ", b"..not stuffed\r\n.\r\n",
                  b"after a lone dot line\r\n"]
        for chunk in chunks[:-1]:
            self.assertReply(self.bdat(chunk), 250, "2.0.0", "BDAT chunk")
        qid = self.assertQueued(self.bdat(chunks[-1], last=True))
        self.assertEqual(self.stored_body(qid), b"".join(chunks))

    def test_bdat_zero_last(self):
        self.assertReply(self.bdat(b"Subject: z\r\n\r\nbody\r\n"), 250, "2.0.0")
        qid = self.assertQueued(self.bdat(b"", last=True))
        self.assertEqual(self.stored_body(qid), b"Subject: z\r\n\r\nbody\r\n")

    def test_bare_lf_and_cr_allowed_in_bdat(self):
        body = b"Subject: binary-safe\r\n\r\nbare LF\nbare CR\r here\r\n"
        qid = self.assertQueued(self.bdat(body, last=True))
        self.assertEqual(self.stored_body(qid), body)

    def test_pipelined_bdat(self):
        chunks = [b"Subject: p\r\n\r\n", b"a" * 100000 + b"\r\n", b"end\r\n"]
        self.c.send(b"BDAT %d\r\n" % len(chunks[0]) + chunks[0]
                    + b"BDAT %d\r\n" % len(chunks[1]) + chunks[1]
                    + b"BDAT %d LAST\r\n" % len(chunks[2]) + chunks[2]
                    + b"NOOP\r\n")
        r1, r2, r3, noop = self.c.replies(4)
        self.assertReply(r1, 250, "2.0.0")
        self.assertReply(r2, 250, "2.0.0")
        qid = self.assertQueued(r3)
        self.assertReply(noop, 250, "2.0.0")
        self.assertEqual(self.stored_body(qid), b"".join(chunks))

    def test_data_after_bdat_refused(self):
        self.assertReply(self.bdat(b"Subject: x\r\n\r\n"), 250)
        self.assertReply(self.c.cmd("DATA"), 503, "5.5.1", "DATA inside a BDAT transaction")

    def test_bdat_without_transaction(self):
        self.assertReply(self.c.cmd("RSET"), 250)
        r = self.bdat(b"xxxx", last=True)
        self.assertReply(r, 503, "5.5.1", "BDAT without MAIL/RCPT")
        # the 4 octets were consumed as data, not read as a command
        self.assertReply(self.c.cmd("NOOP"), 250, "2.0.0")

    def test_bdat_bad_size(self):
        self.assertReply(self.c.cmd("BDAT x"), 501, "5.5.x")

    def test_bdat_over_max_message_size(self):
        limit = int(self.s.cfg("smtpd", "max_message_size"))
        chunk = b"x" * (limit // 2 + 1024)
        self.assertReply(self.bdat(chunk), 250, "2.0.0", "first chunk, under the limit")
        self.assertReply(self.bdat(chunk, last=True), 552, "5.3.4", "the chunk that overruns")
        self.assertEqual(self.s.spool_ids(), [])
        # the refused message's partial file is unlinked off the event loop
        self.assertTrue(st.wait_until(lambda: self.s.spool_files("incoming") == [], timeout=5),
                        f"incoming/ not emptied: {self.s.spool_files('incoming')}")
        # RFC 3030 3: after an error reply to BDAT the client sends RSET
        self.assertReply(self.c.cmd("RSET"), 250, "2.0.0")
        qid = self.assertQueued(self.c.transaction("alice@example.test", "user@example.test",
                                                   b"Subject: after\r\n\r\nok\r\n"))
        self.assertEqual(self.s.spool_ids(), [qid])


if __name__ == "__main__":
    st.main()
