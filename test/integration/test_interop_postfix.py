#!/usr/bin/python3
"""Postfix and Sluice exchange mail both ways (issue 8, scope 1).

A private Postfix (interop.Postfix: its own config, queue and data
directories in a temp dir, smtpd with STARTTLS on a free 127.0.0.1 port, a
log file, virtual Maildirs for its domain pf.test) next to a Sluice (mx and
submission listeners, local domain example.test).

- Inbound: a message submitted to Postfix for user@example.test is relayed
  to Sluice as the MX of example.test; STARTTLS is used (Sluice's Received
  header says ESMTPS, Postfix logs the TLS connection and status=sent), and
  it lands in the Maildir.
- Outbound: Sluice delivers mail for bob@pf.test to Postfix, found as the MX
  of pf.test through the loopback dnsmasq (dns_servers), with STARTTLS;
  Postfix's Received header names the TLS cipher and ESMTPS.
- DSNs both ways: Sluice sends to a user Postfix does not have (550 5.1.1 at
  RCPT) and Sluice's multipart/report reaches the sender's Maildir; Postfix
  relays to a user Sluice does not have (550 5.1.1 at RCPT) and Postfix's
  bounce reaches bob@pf.test's Maildir.

DNS on Postfix's side: Postfix resolves through the system resolver. When
the suite runs in scripts/test's mount namespace (/etc/resolv.conf names
only 127.0.0.1) and 127.0.0.1:53 is free, a dnsmasq on port 53 serves the MX
of example.test and Postfix looks it up (transport "example.test:PORT": MX
lookup, then Sluice's port). Otherwise Postfix's transport map names Sluice
as "[127.0.0.1]:PORT" (no lookup at all) and the test says so in its output;
either way no lookup can leave the machine.

Needs root and Postfix (scripts/deps).
"""

import email
import email.policy
import os
import re
import socket

import interop
import sluicetest as st
from dlvtest import parse_dsn
from sluicetest import SluiceCase

LOGIN = "user@example.test"
PASSWORD = "postfix interop pw"


def resolv_conf_is_loopback_only():
    try:
        with open("/etc/resolv.conf") as f:
            servers = re.findall(r"(?m)^\s*nameserver\s+(\S+)", f.read())
    except OSError:
        return False
    return servers == ["127.0.0.1"]


def port53_free():
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", 53))
        except OSError:
            return False
        finally:
            s.close()
    return True


class PostfixInterop(SluiceCase):
    def setUp(self):
        super().setUp()
        s = self.sluice(start=False, listeners=("mx", "submission"))
        sasldb = os.path.join(s.dir, "sasldb2")
        interop.make_sasldb(sasldb, LOGIN, PASSWORD)

        # Postfix's route to Sluice: MX lookup through a dnsmasq on port 53
        # when the namespace allows it, else a literal next hop.
        self.postfix_dns = None
        if resolv_conf_is_loopback_only() and port53_free():
            dns = st.DnsServer(self, port=53)
            dns.mx("example.test", "mx.example.test")
            dns.a("mx.example.test", "127.0.0.1")
            dns.start()
            self.postfix_dns = dns
            nexthop = f"example.test:{s.ports['mx']}"
            pf_dns = {"smtp_dns_support_level": "enabled", "smtp_host_lookup": "dns"}
        else:
            nexthop = f"[127.0.0.1]:{s.ports['mx']}"
            pf_dns = {}
        self.pf = interop.Postfix(self, users=("bob",), relay={"example.test": nexthop},
                                  extra_main=pf_dns)
        self.pf.start()

        # Sluice's route to Postfix: the MX of pf.test from Sluice's dnsmasq.
        s.dns.mx("pf.test", "mx.pf.test")
        s.dns.a("mx.pf.test", "127.0.0.1")
        s.write_config(smtpd={"sasl_db": sasldb, "auth_mechanisms": "PLAIN LOGIN"},
                       delivery={"remote_port": self.pf.port, "tls": "may"})
        s.start_smtpd()
        s.start_delivery()
        self.s = s

    def fail_with_log(self, msg):
        super().fail_with_log(f"{msg}\n--- postfix maillog ---\n{self.pf.log()[-4000:]}")

    def wait_maildir(self, path, n, what):
        ok = st.wait_until(lambda: len(interop.maildir_entries(path)) >= n, 30, 0.05)
        if not ok:
            self.fail_with_log(f"{what}: {path} holds {len(interop.maildir_entries(path))}, "
                               f"want {n}")
        return list(interop.maildir_entries(path).values())

    def wait_pf_log(self, pattern, what):
        m = interop.wait_log(self.pf.log, pattern, 30)
        if not m:
            self.fail_with_log(f"{what}: no Postfix log line matching {pattern!r}")
        return m

    def test_inbound_postfix_relays_to_sluice_with_starttls(self):
        if self.postfix_dns is None:
            print("\n  (Postfix reaches Sluice through transport [127.0.0.1]:port: this run has "
                  "no loopback-only /etc/resolv.conf or 127.0.0.1:53 is taken)")
        body = (b"From: Bob <bob@pf.test>\r\nTo: <user@example.test>\r\n"
                b"Subject: from Postfix\r\nMessage-ID: <pf-in-1@pf.test>\r\n\r\n"
                b"relayed by Postfix\r\n.dot line\r\n")
        c = self.pf.smtp()
        c.ehlo()
        c.sendmail("bob@pf.test", ["user@example.test"], body)
        c.quit()
        data = self.wait_maildir(self.s.maildir(LOGIN), 1, "inbound")[0]
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        received = msg.get_all("Received")
        # newest first: Sluice's, then Postfix's own
        self.assertRegex(received[0], r"from pf\.test .*\[127\.0\.0\.1\]")
        self.assertIn("using TLSv1.", received[0])
        self.assertRegex(received[0], r"by mx\.example\.test \(Sluice\) with ESMTPS id [0-9A-F]{14}")
        self.assertRegex(received[1], r"by pf\.test \(Postfix\) with E?SMTP")
        self.assertEqual(msg["Message-ID"], "<pf-in-1@pf.test>")
        self.assertIn(b"\n.dot line\n", data)
        self.wait_pf_log(r"TLS connection established to [^ ]*\[127\.0\.0\.1\]:"
                         rf"{self.s.ports['mx']}: TLSv1\.[23]", "Postfix used STARTTLS")
        m = self.wait_pf_log(r"to=<user@example\.test>, relay=[^ ]*\[127\.0\.0\.1\]:"
                             rf"{self.s.ports['mx']}, .*status=sent \(250 2\.0\.0 Ok: queued as "
                             r"([0-9A-F]{14})\)", "Postfix's delivery to Sluice")
        self.assertIn(m.group(1), self.s.log(), "Sluice logged the queue id Postfix saw")
        if self.postfix_dns is not None:
            self.assertIn("mx.example.test", self.postfix_dns.log(),
                          "Postfix looked up the MX of example.test")

    def test_outbound_sluice_delivers_to_postfix_with_starttls(self):
        body = (b"From: <user@example.test>\r\nTo: <bob@pf.test>\r\n"
                b"Subject: to Postfix\r\nMessage-ID: <sl-out-1@example.test>\r\n\r\n"
                b"delivered by Sluice\r\n")
        qid = interop.submit(self.s, LOGIN, PASSWORD, LOGIN, "bob@pf.test", body)
        data = self.wait_maildir(self.pf.maildir("bob"), 1, "outbound")[0]
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        received = [" ".join(r.split()) for r in msg.get_all("Received")]
        # Postfix's header: Sluice connected from mx.example.test with TLS
        self.assertRegex(received[0], r"^from mx\.example\.test \(")
        self.assertRegex(received[0], r"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)")
        self.assertRegex(received[0], r"by pf\.test \(Postfix\) with ESMTPS id \w+")
        self.assertIn("for <bob@pf.test>", received[0])
        # Sluice's own header below it: the client submitted with TLS and AUTH
        self.assertRegex(received[1], rf"by mx\.example\.test \(Sluice\) with ESMTPSA id {qid}")
        self.assertEqual(msg["Message-ID"], "<sl-out-1@example.test>")
        self.wait_pf_log(r"Anonymous TLS connection established from mx\.example\.test"
                         r"|TLS connection established from [^ ]*\[127\.0\.0\.1\]",
                         "Postfix saw a TLS client")
        log = interop.wait_log(lambda: self.s.log("sluice-delivery"),
                               rf"{qid}: to=<bob@pf\.test>, relay=mx\.pf\.test\[127\.0\.0\.1\]:"
                               rf"{self.pf.port}, .*tls=TLSv1\.[23].*status=sent")
        if not log:
            self.fail_with_log("Sluice did not log a TLS delivery to mx.pf.test")

    def test_dsn_when_postfix_refuses_at_rcpt(self):
        body = (b"From: <user@example.test>\r\nTo: <nobody@pf.test>\r\n"
                b"Subject: to a ghost\r\nMessage-ID: <sl-out-2@example.test>\r\n\r\nhello\r\n")
        qid = interop.submit(self.s, LOGIN, PASSWORD, LOGIN, "nobody@pf.test", body)
        data = self.wait_maildir(self.s.maildir(LOGIN), 1, "Sluice's DSN")[0]
        msg, per_msg, rcpts, orig = parse_dsn(self, data)
        self.assertEqual(per_msg["Reporting-MTA"], "dns; mx.example.test")
        self.assertEqual(len(rcpts), 1, rcpts)
        r = rcpts[0]
        self.assertEqual(r["Final-Recipient"], "rfc822; nobody@pf.test")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertEqual(r["Remote-MTA"], "dns; mx.pf.test")
        diag = " ".join(r["Diagnostic-Code"].split())
        self.assertRegex(diag, r"^smtp; 550 5\.1\.1 <nobody@pf\.test>: Recipient address "
                               r"rejected")
        self.wait_pf_log(r"NOQUEUE: reject: RCPT from [^ ]*\[127\.0\.0\.1\]: 550 "
                         r"5\.1\.1 <nobody@pf\.test>", "Postfix's 550 at RCPT")
        self.assertRegex(self.s.log("sluice-delivery"),
                         rf"{qid}: to=<nobody@pf\.test>, .*dsn=5\.1\.1, status=bounced")
        self.assertEqual(interop.maildir_entries(self.pf.maildir("bob")), {})

    def test_postfix_bounce_when_sluice_refuses_at_rcpt(self):
        body = (b"From: Bob <bob@pf.test>\r\nTo: <ghost@example.test>\r\n"
                b"Subject: to a ghost at Sluice\r\nMessage-ID: <pf-in-2@pf.test>\r\n\r\nhi\r\n")
        c = self.pf.smtp()
        c.ehlo()
        c.sendmail("bob@pf.test", ["ghost@example.test"], body)
        c.quit()
        data = self.wait_maildir(self.pf.maildir("bob"), 1, "Postfix's bounce")[0]
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        status = msg.get_payload()[1]
        self.assertEqual(status.get_content_type(), "message/delivery-status")
        blocks = status.get_payload()
        per_rcpt = dict(blocks[1].items())
        self.assertEqual(per_rcpt["Final-Recipient"], "rfc822; ghost@example.test")
        self.assertEqual(per_rcpt["Action"], "failed")
        self.assertEqual(per_rcpt["Status"], "5.1.1")
        diag = " ".join(per_rcpt["Diagnostic-Code"].split())
        self.assertRegex(diag, r"^smtp; 550 5\.1\.1 ")
        # Sluice's answer, as Postfix recorded it
        self.wait_pf_log(r"to=<ghost@example\.test>, relay=[^ ]*\[127\.0\.0\.1\]:"
                         rf"{self.s.ports['mx']}, .*status=bounced \(host [^ ]* said: 550 "
                         r"5\.1\.1", "Postfix's bounce")
        self.assertEqual(interop.maildir_entries(self.s.maildir(LOGIN)), {})


if __name__ == "__main__":
    st.main()
