#!/usr/bin/python3
"""SPF on the mx listener through the real server and a real DNS server
(dnsmasq on a loopback port): pass, fail, softfail, neutral, none,
permerror and temperror (DNS server stopped), with spf = reject and tag,
the Received-SPF header above our Received, and no check for trusted or
authenticated clients."""

import email

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: spf\r\n\r\nhi\r\n"


class Spf(SluiceCase):
    def start(self, mode="reject", trusted=""):
        s = self.sluice(start=False)
        d = s.dns
        d.txt("pass.test", "v=spf1 ip4:127.0.0.1 -all")
        d.txt("fail.test", "v=spf1 ip4:192.0.2.1 -all")
        d.txt("softfail.test", "v=spf1 ~all")
        d.txt("neutral.test", "v=spf1 ?all")
        d.txt("perm.test", "v=spf1 foo:bar -all")
        d.txt("helo-fail.test", "v=spf1 -all")
        d.option("local=/test/")
        s.write_config(smtpd={"spf": mode, "trusted_networks": trusted})
        s.start_smtpd()
        return s

    def mail(self, s, sender, helo="client.example"):
        c = self.connect(s, ehlo=False)
        self.assertReply(c.cmd(f"EHLO {helo}"), 250)
        return c, c.cmd(f"MAIL FROM:<{sender}>")

    def deliver(self, s, sender):
        c, r = self.mail(s, sender)
        self.assertReply(r, 250, "2.1.0", f"MAIL from {sender}")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.assertQueued(c.cmd("Subject: spf\r\n\r\nhi\r\n."))
        return qid, email.message_from_bytes(s.message(qid))

    def test_pass_is_tagged(self):
        s = self.start()
        qid, msg = self.deliver(s, "a@pass.test")
        self.assertTrue(msg["Received-SPF"].startswith("pass"), msg["Received-SPF"])
        self.assertIn("client-ip=127.0.0.1", msg["Received-SPF"])
        self.assertIn('envelope-from="a@pass.test"', msg["Received-SPF"])
        raw = s.message(qid)
        self.assertLess(raw.index(b"Received-SPF:"), raw.index(b"Received: from"),
                        "Received-SPF goes above our Received (RFC 7208 9.1)")
        self.assertEqual(s.envelope(qid).get("spf"), "pass")

    def test_fail_rejected(self):
        s = self.start()
        c, r = self.mail(s, "a@fail.test")
        self.assertReply(r, 550, "5.7.23")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1")
        self.assertRegex(s.log(), r"reject: MAIL .*550 5\.7\.23")

    def test_fail_tagged_in_tag_mode(self):
        s = self.start("tag")
        qid, msg = self.deliver(s, "a@fail.test")
        self.assertTrue(msg["Received-SPF"].startswith("fail"), msg["Received-SPF"])

    def test_softfail_neutral_none_accepted(self):
        s = self.start()
        for sender, word in (("a@softfail.test", "softfail"), ("a@neutral.test", "neutral"),
                             ("a@none.test", "none")):
            qid, msg = self.deliver(s, sender)
            self.assertTrue(msg["Received-SPF"].startswith(word), f"{sender}: {msg['Received-SPF']}")

    def test_permerror_accepted_and_tagged(self):
        s = self.start()
        qid, msg = self.deliver(s, "a@perm.test")
        self.assertTrue(msg["Received-SPF"].startswith("permerror"), msg["Received-SPF"])

    def test_helo_fail_decides(self):
        s = self.start()
        c, r = self.mail(s, "a@pass.test", helo="helo-fail.test")
        self.assertReply(r, 550, "5.7.23")

    def test_temperror_when_dns_down(self):
        s = self.start()
        s.dns.stop()
        c, r = self.mail(s, "a@pass.test")
        self.assertReply(r, 451, "4.7.24")

    def test_pipelined_rcpt_waits_for_spf(self):
        s = self.start()
        c = self.connect(s)
        c.send(b"MAIL FROM:<a@fail.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        r1, r2, r3 = c.replies(3)
        self.assertReply(r1, 550, "5.7.23")
        self.assertReply(r2, 503, "5.5.1")
        self.assertReply(r3, 503, "5.5.1")

    def test_trusted_client_not_checked(self):
        s = self.start(trusted="127.0.0.0/8")
        qid, msg = self.deliver(s, "a@fail.test")
        self.assertIsNone(msg["Received-SPF"])


if __name__ == "__main__":
    import unittest
    unittest.main()
