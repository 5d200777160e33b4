#!/usr/bin/python3
"""The client's name: a PTR record confirmed by a forward lookup, from a
real DNS server (dnsmasq) on a loopback port. The name appears in the log
and the Received header only when the forward lookup gives the client's
address back; otherwise the client is "unknown"."""

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: rdns\r\n\r\nhi\r\n"


class ReverseDns(SluiceCase):
    def received_from(self, s):
        c = self.connect(s)
        # the lookup runs beside the dialogue: give it a moment to finish
        st.wait_until(lambda: "connect from" in s.log())
        st.wait_until(lambda: False, timeout=0.3)
        qid = self.assertQueued(c.transaction("a@remote.test", "user@example.test", BODY))
        self.assertReply(c.cmd("QUIT"), 221)
        return st.split_received(s.message(qid))[0].decode()

    def test_confirmed_name(self):
        s = self.sluice(start=False)
        s.dns.ptr("1.0.0.127.in-addr.arpa", "client.example.test")
        s.dns.a("client.example.test", "127.0.0.1")
        s.start_smtpd()
        self.assertIn("(client.example.test [127.0.0.1])", self.received_from(s))
        self.assertTrue(st.wait_until(
            lambda: "disconnect from client.example.test[127.0.0.1]" in s.log()), s.log())

    def test_unconfirmed_name_is_unknown(self):
        s = self.sluice(start=False)
        s.dns.ptr("1.0.0.127.in-addr.arpa", "liar.example.test")
        s.dns.a("liar.example.test", "192.0.2.7")
        s.start_smtpd()
        self.assertIn("(unknown [127.0.0.1])", self.received_from(s))
        self.assertTrue(st.wait_until(
            lambda: "hostname liar.example.test does not resolve to address 127.0.0.1"
            in s.log()), s.log())

    def test_no_ptr_is_unknown(self):
        s = self.sluice()
        self.assertIn("(unknown [127.0.0.1])", self.received_from(s))


if __name__ == "__main__":
    import unittest
    unittest.main()
