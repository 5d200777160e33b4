#!/usr/bin/python3
"""sluice-delivery, local half: Maildir content byte-exact, latency after the
250, alias fan-out (nested, self-reference), a Maildir that cannot be written
(deferred, then delivered after the fix, SIGHUP and a flush), postmaster, and
a clean SIGTERM."""

import os
import re
import signal
import statistics
import subprocess
import time

import sluicetest as st
from dlvtest import DeliveryCase, Receiver, SENDER, maildir_files, maildir_names, notify

BODY = (b"Subject: exact\r\nFrom: alice@example.test\r\nTo: user@example.test\r\n\r\n"
        b".leading dot\r\n..two dots\r\n.\r\nnot the end\r\n"
        b"8-bit: caf\xc3\xa9 \xff\xfe raw\r\n"
        b"trailing spaces   \r\n"
        b"\r\n"
        b"last line\r\n")


class Content(DeliveryCase):
    def test_byte_exact(self):
        s = self.start()
        qid = self.send(s, "user@example.test", BODY, mail_options=["BODY=8BITMIME"])
        files = self.wait_files(s.maildir("user@example.test"), 1)
        self.assertEqual(len(files), 1)
        data = files[0]
        prefix = (b"Return-Path: <alice@example.test>\nDelivered-To: user@example.test\n")
        self.assertTrue(data.startswith(prefix), data[:300])
        rest = data[len(prefix):]
        m = re.match(rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*", rest)
        self.assertIsNotNone(m, rest[:300])
        self.assertIn(qid.encode(), m.group(0))
        # The client's bytes, CRLF made LF, everything else unchanged.
        self.assertEqual(rest[m.end():], BODY.replace(b"\r\n", b"\n"))
        name = maildir_names(s.maildir("user@example.test"))[0]
        self.assertIn(f"Q{qid}_0.", name)
        self.wait_spool_empty(s)
        self.wait_log(s, rf"{qid}: removed")
        log = s.log("sluice-delivery")
        self.assertRegex(log, rf"{qid}: to=<user@example\.test>, relay=local, delay=\d+\.\d, "
                              r"tls=none, dsn=2\.0\.0, status=sent \(250 2\.0\.0 ")
        self.assertIn(f"{qid}: removed", log)

    def test_latency(self):
        """Time from the 250 to the file in new/ (printed, not asserted)."""
        s = self.start()
        path = s.maildir("bob@example.test")
        samples = []
        c = s.smtplib()
        c.ehlo("client.test")
        for i in range(10):
            before = len(maildir_names(path))
            c.sendmail(SENDER, ["bob@example.test"], f"Subject: t{i}\r\n\r\nx\r\n".encode())
            t0 = time.monotonic()
            st.wait_until(lambda: len(maildir_names(path)) > before, 10, 0.0005)
            samples.append((time.monotonic() - t0) * 1000)
            time.sleep(0.05)  # idle machine: one at a time
        c.quit()
        print(f"\nlatency 250 -> Maildir (ms): median {statistics.median(samples):.1f}, "
              f"max {max(samples):.1f}, all {[round(x, 1) for x in samples]}")
        self.assertEqual(len(maildir_names(path)), 10)


class Aliases(DeliveryCase):
    def test_fanout_nested(self):
        s = self.start(aliases={
            "team@example.test": "user@example.test, bob@example.test, nested@example.test",
            "nested@example.test": "alice@example.test, user@example.test",
            "keep@example.test": "keep@example.test, bob@example.test",
        }, mailboxes={"keep@example.test": "{root}/keep"})
        qid = self.send(s, "team@example.test", b"Subject: fan-out\r\n\r\nhello team\r\n")
        self.wait_spool_empty(s)
        # user@ is reached twice (directly and through nested@): one copy.
        for addr in ("user@example.test", "bob@example.test", "alice@example.test"):
            files = maildir_files(s.maildir(addr))
            self.assertEqual(len(files), 1, f"{addr}: {len(files)} copies")
            self.assertIn(f"Delivered-To: {addr}\n".encode(), files[0])
            self.assertTrue(files[0].endswith(b"hello team\n"))
        log = s.log("sluice-delivery")
        self.assertRegex(log, rf"{qid}: to=<alice@example\.test>, orig_to=<team@example\.test>, "
                              r"relay=local, .*status=sent")
        # An alias that names itself keeps a copy in its own mailbox.
        self.send(s, "keep@example.test", b"Subject: keep\r\n\r\nkeep\r\n")
        self.wait_spool_empty(s)
        self.assertEqual(len(maildir_files(s.maildir("keep@example.test"))), 1)
        self.assertEqual(len(maildir_files(s.maildir("bob@example.test"))), 2)

    def test_remote_target(self):
        """An alias may name remote addresses: handed to the SMTP client."""
        rcv = Receiver(self)
        s = self.start(aliases={"fwd@example.test": "user@example.test, far@remote.test"},
                       mx={"remote.test": rcv})
        qid = self.send(s, "fwd@example.test", b"Subject: forward\r\n\r\nto two places\r\n")
        self.wait_spool_empty(s)
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 1)
        self.assertTrue(st.wait_until(lambda: rcv.messages, 5))
        mail_from, rcpts, content = rcv.messages[0]
        self.assertEqual((mail_from, rcpts), (SENDER, ["far@remote.test"]))
        self.assertIn(b"to two places", content)
        self.assertRegex(s.log("sluice-delivery"),
                         rf"{qid}: to=<far@remote\.test>, orig_to=<fwd@example\.test>, "
                         rf"relay=mx\.remote\.test\[127\.0\.0\.1\]:{rcv.port}, .*status=sent")

    def test_postmaster(self):
        # The harness maps postmaster@ each local domain to user@; drop that
        # for localhost: postmaster@localhost must still arrive somewhere.
        s = self.start()
        del s.aliases["postmaster@localhost"]
        s.write_maps()
        os.kill(s.daemons["sluice-delivery"].pid, signal.SIGHUP)
        os.kill(s.daemons["sluice-smtpd"].pid, signal.SIGHUP)
        self.wait_log(s, r"reload: maps reloaded")
        time.sleep(0.2)
        self.send(s, "postmaster@localhost", b"Subject: pm\r\n\r\nfor the postmaster\r\n")
        self.wait_spool_empty(s)
        files = maildir_files(s.maildir("user@example.test"))
        self.assertEqual(len(files), 1)
        self.assertIn(b"Delivered-To: user@example.test\n", files[0])


class Deferral(DeliveryCase):
    def test_unwritable_then_fixed(self):
        s = self.start(mailboxes={"bob@example.test": "{dir}/broken/Maildir"})
        # After the start (whose config check would refuse it): a regular
        # file where the Maildir's parent folder should be.
        with open(os.path.join(s.dir, "broken"), "w") as f:
            f.write("not a folder\n")
        qid = self.send(s, ["bob@example.test", "user@example.test"],
                        b"Subject: deferred\r\n\r\nwait for me\r\n")
        env = self.wait_rcpt_state(s, qid, "bob@example.test", "deferred")
        bob = [r for r in env.rcpts if r["rcpt"] == "bob@example.test"][0]
        self.assertEqual(bob["rcpt-attempts"], "1")
        self.assertEqual(bob["rcpt-dsn-status"], "4.3.0")
        self.assertIn("Not a directory", bob["rcpt-last-reply"])
        self.wait_rcpt_state(s, qid, "user@example.test", "delivered")
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 1)
        self.assertRegex(s.log("sluice-delivery"),
                         rf"{qid}: to=<bob@example\.test>, relay=local, .*dsn=4\.3\.0, "
                         r"status=deferred \(451 4\.3\.0 cannot write to mailbox")
        # Still queued (retry_initial is 5m): nothing lost, nothing bounced.
        time.sleep(0.5)
        self.assertIn(qid, s.spool_ids())
        self.assertEqual(maildir_files(s.maildir("alice@example.test")), [])
        # The admin fixes the map, reloads, flushes.
        good = os.path.join(s.maildir_root, "bob-fixed")
        s.mailboxes["bob@example.test"] = good
        s.write_maps()
        os.kill(s.daemons["sluice-delivery"].pid, signal.SIGHUP)
        self.wait_log(s, r"reload: maps reloaded")
        notify(s, "flush")
        self.wait_spool_empty(s)
        files = maildir_files(good)
        self.assertEqual(len(files), 1)
        self.assertTrue(files[0].endswith(b"wait for me\n"))
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 1, "no duplicate")

    def test_sigterm_clean(self):
        s = self.start()
        # One runner per spool: a second one refuses to start (EX_TEMPFAIL).
        second = subprocess.run([os.path.join(st.BIN, "sluice-delivery"), "-c", s.conf_path],
                                capture_output=True, text=True, timeout=20)
        self.assertEqual(second.returncode, 75, second.stderr)
        self.assertIn("another sluice-delivery", second.stderr)
        self.send(s, "user@example.test", b"Subject: a\r\n\r\nx\r\n")
        self.wait_spool_empty(s)
        s.stop("sluice-delivery")  # raises unless exit 0 without sanitizer reports
        self.assertFalse(os.path.exists(os.path.join(s.spool, "run", "delivery.sock")))
        # Mail queued while it is down is delivered after the restart (scan).
        qid = self.send(s, "user@example.test", b"Subject: b\r\n\r\ny\r\n")
        time.sleep(0.2)
        self.assertIn(qid, s.spool_ids())
        s.start_delivery()
        self.wait_spool_empty(s)
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 2)


if __name__ == "__main__":
    st.main()
