#!/usr/bin/python3
"""sluice-delivery, DSNs (RFC 3464): an alias loop and an unknown mailbox
behind an alias bounce to the sender's Maildir as multipart/report; RET=FULL;
NOTIFY=NEVER and NOTIFY=SUCCESS; max_queue_lifetime expiry (4.4.7); a delay
warning; and never a bounce of a bounce."""

import os
import time

import sluicetest as st
from dlvtest import DeliveryCase, Receiver, SENDER, maildir_files, parse_dsn

BODY = b"Subject: bounce me\r\nMessage-ID: <orig-1@example.test>\r\n\r\nthe body\r\n"


class Bounces(DeliveryCase):
    def test_alias_loop(self):
        s = self.start(aliases={"loop1@example.test": "loop2@example.test",
                                "loop2@example.test": "loop1@example.test"})
        qid = self.send(s, "loop1@example.test", BODY)
        files = self.wait_files(s.maildir(SENDER), 1)
        self.wait_spool_empty(s)
        msg, per_msg, rcpts, orig = parse_dsn(self, files[0])
        self.assertIn(b"Return-Path: <>\n", files[0])
        self.assertEqual(per_msg["Reporting-MTA"], "dns; mx.example.test")
        self.assertEqual(per_msg["X-Sluice-Queue-ID"], qid)
        self.assertEqual(len(rcpts), 1)
        self.assertEqual(rcpts[0]["Final-Recipient"], "rfc822; loop1@example.test")
        self.assertEqual(rcpts[0]["Action"], "failed")
        self.assertEqual(rcpts[0]["Status"], "5.4.6")
        self.assertIn("alias loop", rcpts[0]["Diagnostic-Code"])
        self.assertEqual(orig.get_content_type(), "text/rfc822-headers")
        self.assertIn("Message-ID: <orig-1@example.test>", orig.get_payload())
        self.assertNotIn("the body", orig.get_payload())
        log = s.log("sluice-delivery")
        self.assertRegex(log, rf"{qid}: to=<loop1@example\.test>, relay=local, .*dsn=5\.4\.6, "
                              r"status=bounced")
        self.assertRegex(log, rf"{qid}: sender non-delivery notification: [0-9A-F]{{14}}")

    def test_unknown_mailbox_behind_alias(self):
        s = self.start(aliases={"team@example.test": "user@example.test, ghost@example.test"})
        self.send(s, "team@example.test", BODY, mail_options=["RET=FULL", "ENVID=env+2B1"],
                  rcpt_options=["ORCPT=rfc822;team@example.test"])
        files = self.wait_files(s.maildir(SENDER), 1)
        self.wait_spool_empty(s)
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 1)
        msg, per_msg, rcpts, orig = parse_dsn(self, files[0])
        self.assertEqual(msg["To"], f"<{SENDER}>")
        self.assertEqual(per_msg["Original-Envelope-Id"], "env+1")
        self.assertEqual(len(rcpts), 1, rcpts)
        r = rcpts[0]
        self.assertEqual(r["Final-Recipient"], "rfc822; ghost@example.test")
        self.assertEqual(r["Original-Recipient"], "rfc822; team@example.test")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertTrue(r["Diagnostic-Code"].startswith("smtp; 550 5.1.1"), r)
        # RET=FULL: the whole original comes back.
        self.assertEqual(orig.get_content_type(), "message/rfc822")
        inner = orig.get_payload()[0]
        self.assertEqual(inner["Subject"], "bounce me")
        self.assertIn("the body", inner.get_payload())

    def test_remote_550(self):
        rcv = Receiver(self, {"nobody@remote.test": "550 5.1.1 <nobody@remote.test>: no such user"})
        # Relaying from loopback: the client is trusted here.
        s = self.start(mx={"remote.test": rcv}, smtpd={"trusted_networks": "127.0.0.0/8"})
        qid = self.send(s, ["nobody@remote.test", "ok@remote.test"], BODY)
        files = self.wait_files(s.maildir(SENDER), 1)
        self.wait_spool_empty(s)
        self.assertEqual([m[1] for m in rcv.messages], [["ok@remote.test"]])
        msg, per_msg, rcpts, orig = parse_dsn(self, files[0])
        self.assertEqual(len(rcpts), 1, rcpts)
        r = rcpts[0]
        self.assertEqual(r["Final-Recipient"], "rfc822; nobody@remote.test")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertEqual(r["Remote-MTA"], "dns; mx.remote.test")
        self.assertIn("550 5.1.1 <nobody@remote.test>: no such user",
                      " ".join(r["Diagnostic-Code"].split()))
        self.assertRegex(s.log("sluice-delivery"),
                         rf"{qid}: to=<nobody@remote\.test>, relay=mx\.remote\.test\[127\.0\.0\.1\]"
                         rf":{rcv.port}, delay=\d+\.\d, tls=none, dsn=5\.1\.1, status=bounced")

    def test_notify_never_and_success(self):
        s = self.start(aliases={"loop1@example.test": "loop2@example.test",
                                "loop2@example.test": "loop1@example.test"})
        self.send(s, "loop1@example.test", BODY, rcpt_options=["NOTIFY=NEVER"])
        self.wait_spool_empty(s)
        qid = self.send(s, "bob@example.test", BODY, rcpt_options=["NOTIFY=SUCCESS"])
        files = self.wait_files(s.maildir(SENDER), 1)
        self.wait_spool_empty(s)
        time.sleep(0.2)
        files = maildir_files(s.maildir(SENDER))
        self.assertEqual(len(files), 1, "NEVER gave no DSN; SUCCESS gave one")
        msg, per_msg, rcpts, orig = parse_dsn(self, files[0])
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        self.assertEqual(per_msg["X-Sluice-Queue-ID"], qid)
        self.assertEqual(rcpts[0]["Action"], "delivered")
        self.assertEqual(rcpts[0]["Status"], "2.0.0")

    def test_success_through_aliases(self):
        """RFC 3461 6.2.7: a fan-out reports "expanded" (its targets no success
        DSN); a forward to one address passes NOTIFY on (the target reports)."""
        s = self.start(aliases={"team@example.test": "user@example.test, bob@example.test",
                                "fwd@example.test": "bob@example.test"})
        self.send(s, "team@example.test", BODY, rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
        files = self.wait_files(s.maildir(SENDER), 1)
        self.wait_spool_empty(s)
        self.send(s, "fwd@example.test", BODY, rcpt_options=["NOTIFY=SUCCESS"])
        files = self.wait_files(s.maildir(SENDER), 2)
        self.wait_spool_empty(s)
        time.sleep(0.2)
        files = maildir_files(s.maildir(SENDER))
        self.assertEqual(len(files), 2)
        dsns = [parse_dsn(self, f)[2] for f in files]
        self.assertEqual([(r["Final-Recipient"], r["Action"]) for r in dsns[0]],
                         [("rfc822; team@example.test", "expanded")])
        self.assertEqual([(r["Final-Recipient"], r["Action"], r.get("Original-Recipient"))
                          for r in dsns[1]],
                         [("rfc822; bob@example.test", "delivered", "rfc822; fwd@example.test")])

    def test_never_bounce_a_bounce(self):
        s = self.start(aliases={"loop1@example.test": "loop2@example.test",
                                "loop2@example.test": "loop1@example.test"})
        qid = self.send(s, "loop1@example.test", BODY, sender="")
        self.wait_spool_empty(s)
        self.assertRegex(s.log("sluice-delivery"),
                         rf"{qid}: to=<loop1@example\.test>: undeliverable mail from <> dropped")
        self.assertNotIn("non-delivery notification", s.log("sluice-delivery"))
        for addr in s.mailboxes:
            self.assertEqual(maildir_files(s.maildir(addr)), [], addr)


class Timing(DeliveryCase):
    BROKEN = {"bob@example.test": "{dir}/broken/Maildir"}

    def block(self, s):
        with open(os.path.join(s.dir, "broken"), "w") as f:
            f.write("a file, not a folder\n")

    def test_lifetime_expiry(self):
        s = self.start(delivery={"retry_initial": "1s", "retry_max": "1s",
                                 "max_queue_lifetime": "3s", "delay_warning": "0"},
                       mailboxes=self.BROKEN)
        self.block(s)
        t0 = time.monotonic()
        qid = self.send(s, "bob@example.test", BODY)
        files = self.wait_files(s.maildir(SENDER), 1, timeout=20)
        print(f"\nexpired and bounced after {time.monotonic() - t0:.1f}s (lifetime 3s)")
        self.wait_spool_empty(s)
        msg, per_msg, rcpts, orig = parse_dsn(self, files[0])
        self.assertEqual(rcpts[0]["Final-Recipient"], "rfc822; bob@example.test")
        self.assertEqual(rcpts[0]["Action"], "failed")
        self.assertEqual(rcpts[0]["Status"], "4.4.7")
        diag = " ".join(rcpts[0]["Diagnostic-Code"].split())  # unfolded
        self.assertIn("delivery time expired", diag)
        self.assertIn("cannot write to mailbox", diag)
        log = s.log("sluice-delivery")
        self.assertGreaterEqual(log.count(f"{qid}: to=<bob@example.test>"), 3, "retried")
        self.assertRegex(log, rf"{qid}: to=<bob@example\.test>, .*dsn=4\.4\.7, status=bounced")

    def test_delay_warning(self):
        s = self.start(delivery={"retry_initial": "1s", "retry_max": "1s",
                                 "max_queue_lifetime": "1h", "delay_warning": "1s"},
                       mailboxes=self.BROKEN)
        self.block(s)
        qid = self.send(s, "bob@example.test", BODY)
        files = self.wait_files(s.maildir(SENDER), 1, timeout=20)
        msg, per_msg, rcpts, orig = parse_dsn(self, files[0])
        self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
        self.assertEqual(rcpts[0]["Action"], "delayed")
        self.assertEqual(rcpts[0]["Status"], "4.3.0")
        self.assertIn("Will-Retry-Until", rcpts[0])
        env = s.envelope(qid)
        self.assertEqual(env.get("delay-warned"), "yes")
        # Once only, and the message is still there; fix it and it goes.
        time.sleep(2.5)
        self.assertEqual(len(maildir_files(s.maildir(SENDER))), 1)
        os.unlink(os.path.join(s.dir, "broken"))
        os.mkdir(os.path.join(s.dir, "broken"))
        self.wait_spool_empty(s, timeout=10)
        self.assertEqual(len(maildir_files(os.path.join(s.dir, "broken", "Maildir"))), 1)


if __name__ == "__main__":
    st.main()
