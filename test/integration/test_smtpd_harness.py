#!/usr/bin/python3
"""The harness's own checks (sluicetest.py): the DNS server, the SMTP reply
reader, the spool file parsers. No Sluice program is needed."""

import socket
import threading
import unittest
import zlib

import sluicetest as st


class DnsServerTest(unittest.TestCase):
    def setUp(self):
        self.dns = st.DnsServer(self)
        self.dns.mx("example.test", "mx.example.test", 10)
        self.dns.mx("example.test", "mx2.example.test", 20)
        self.dns.a("mx.example.test", "127.0.0.1", "::1")
        self.dns.a("mx2.example.test", "127.0.0.2")
        self.dns.txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
        self.dns.address("wild.test", "127.0.0.9")
        self.dns.start()

    def test_mx(self):
        rcode, answers = self.dns.query("example.test", "MX")
        self.assertEqual(rcode, "NOERROR", self.dns.log())
        self.assertEqual(sorted(v for t, v in answers if t == "MX"),
                         ["10 mx.example.test", "20 mx2.example.test"])

    def test_a_and_aaaa(self):
        self.assertEqual(self.dns.query("mx.example.test", "A")[1], [("A", "127.0.0.1")])
        self.assertEqual(self.dns.query("mx.example.test", "AAAA")[1], [("AAAA", "::1")])
        self.assertEqual(self.dns.query("host.wild.test", "A")[1], [("A", "127.0.0.9")])

    def test_txt(self):
        rcode, answers = self.dns.query("example.test", "TXT")
        self.assertEqual(answers, [("TXT", "v=spf1 ip4:127.0.0.1 -all")], self.dns.log())

    def test_unknown_names_are_nxdomain_not_forwarded(self):
        rcode, answers = self.dns.query("nothing.example.test", "A")
        self.assertEqual((rcode, answers), ("NXDOMAIN", []), self.dns.log())
        rcode, answers = self.dns.query("example.com", "A")
        self.assertEqual((rcode, answers), ("NXDOMAIN", []), self.dns.log())

    def test_restart_applies_new_records(self):
        self.dns.a("late.example.test", "127.0.0.3")
        self.dns.restart()
        self.assertEqual(self.dns.query("late.example.test", "A")[1], [("A", "127.0.0.3")])


class FakeServer(threading.Thread):
    """Accepts one connection, sends `script` (bytes) and closes."""

    def __init__(self, script):
        super().__init__(daemon=True)
        self.script = script
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]

    def run(self):
        c, _ = self.lsock.accept()
        c.sendall(self.script)
        c.shutdown(socket.SHUT_WR)
        c.recv(100)
        c.close()
        self.lsock.close()


class SmtpConnTest(unittest.TestCase):
    def test_multiline_and_enhanced(self):
        srv = FakeServer(b"220 mx.example.test ESMTP Sluice\r\n"
                         b"250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
                         b"214-2.0.0 help\r\n214 2.0.0 more\r\n"
                         b"550-5.1.1 a\r\n550 5.1.2 b\r\n")
        srv.start()
        with st.SmtpConn(srv.port) as c:
            self.assertEqual(c.greeting.code, 220)
            ehlo = c.reply()
            self.assertEqual(st.ehlo_keywords(ehlo), {"PIPELINING": "", "SIZE": "100"})
            help_ = c.reply()
            self.assertEqual((help_.code, help_.enhanced), (214, "2.0.0"))
            self.assertTrue(help_.enhanced_everywhere())
            mixed = c.reply()
            self.assertFalse(mixed.enhanced_everywhere())
            self.assertTrue(c.closed())
            with self.assertRaises(st.ConnectionClosed):
                c.reply()

    def test_queued_id(self):
        r = st.SmtpReply(250, ["2.0.0 Ok: queued as 18F3A2B4C5D6E0"], b"")
        self.assertEqual(st.queued_id(r), "18F3A2B4C5D6E0")
        r = st.SmtpReply(250, ["2.0.0 Ok: queued as 18f3a2b4c5d6e0"], b"")
        self.assertIsNone(st.queued_id(r))


class FormatTest(unittest.TestCase):
    def test_envelope_parse(self):
        body = (b"sluice-envelope 1\nid: 18F3A2B4C5D6E0\nsender: \n"
                b"rcpt: a@example.test\nrcpt-state: pending\n"
                b"rcpt: b@example.test\nrcpt-state: delivered\n")
        data = body + b"end: %08x\n" % zlib.crc32(body)
        e = st.Envelope(data)
        self.assertEqual(e.version, "sluice-envelope 1")
        self.assertEqual(e.sender, "")
        self.assertEqual(e.recipients, ["a@example.test", "b@example.test"])
        self.assertEqual(e.rcpts[1]["rcpt-state"], "delivered")
        self.assertTrue(e.complete and e.crc_ok)
        self.assertFalse(st.Envelope(body).complete)
        self.assertFalse(st.Envelope(data.replace(b"pending", b"pendinG")).crc_ok)

    def test_split_received_and_dot_stuff(self):
        msg = b"Received: from x\r\n\tby y; date\r\nSubject: s\r\n\r\nbody\r\n"
        head, rest = st.split_received(msg)
        self.assertEqual(head, b"Received: from x\r\n\tby y; date\r\n")
        self.assertEqual(rest, b"Subject: s\r\n\r\nbody\r\n")
        self.assertEqual(st.dot_stuff(b".a\r\nb\r\n..c"), b"..a\r\nb\r\n...c\r\n")

    def test_free_ports_differ(self):
        ports = {st.free_port() for _ in range(20)}
        self.assertEqual(len(ports), 20)


if __name__ == "__main__":
    st.main()
