#!/usr/bin/python3
"""SIGHUP to sluice-delivery.

- Only the maps changed: they are swapped in place (no restart).
- sluice.conf changed: the runner restarts in place on the new config, so
  that even the SMTP client's settings (relayhost here) follow; the process
  stays the same and no message is lost or sent twice.
- A broken sluice.conf or map is refused with FILE:LINE and deliveries go on
  with the running config.
- A fixed key ([server] spool) is reported and keeps its running value."""

import os
import re
import signal

import sluicetest as st
from dlvtest import DeliveryCase, Receiver, maildir_files


class DeliveryReload(DeliveryCase):
    def hup(self, s, pattern):
        before = len(re.findall(pattern, s.log("sluice-delivery")))
        os.kill(s.daemons["sluice-delivery"].pid, signal.SIGHUP)
        ok = st.wait_until(lambda: len(re.findall(pattern, s.log("sluice-delivery"))) > before,
                           st.TIMEOUT, 0.02)
        if not ok:
            self.fail_with_log(f"no {pattern!r} after SIGHUP")

    def test_maps_only(self):
        s = self.start()
        pid = s.daemons["sluice-delivery"].pid
        s.mailboxes["carol@example.test"] = os.path.join(s.maildir_root, "carol")
        s.write_maps()
        os.kill(s.daemons["sluice-smtpd"].pid, signal.SIGHUP)
        self.hup(s, r"reload: maps reloaded")
        self.assertIn("unchanged; reloading the maps", s.log("sluice-delivery"))
        self.assertNotIn("restarting the delivery runner", s.log("sluice-delivery"))
        st.wait_until(lambda: "in force for new sessions" in s.log(), st.TIMEOUT)
        self.send(s, "carol@example.test", b"Subject: new user\r\n\r\nhello carol\r\n")
        self.wait_files(s.maildir("carol@example.test"), 1)
        self.wait_spool_empty(s)
        self.assertEqual(s.daemons["sluice-delivery"].pid, pid)

    def test_config_change_restarts_runner(self):
        first, second = Receiver(self), Receiver(self)
        s = self.start(delivery={"relayhost": f"[127.0.0.1]:{first.port}"},
                       smtpd={"trusted_networks": "127.0.0.1"})
        pid = s.daemons["sluice-delivery"].pid
        self.send(s, "far@remote.test", b"Subject: one\r\n\r\nvia the first relay\r\n")
        self.assertTrue(st.wait_until(lambda: first.messages, st.TIMEOUT), s.log_tails())

        # the relay moves; a local domain is added too
        s.local_domains.append("other.test")
        s.mailboxes["user@other.test"] = os.path.join(s.maildir_root, "other")
        s.write_config(delivery={"relayhost": f"[127.0.0.1]:{second.port}"},
                       smtpd={"trusted_networks": "127.0.0.1"},
                       domains={"local": " ".join(s.local_domains)})
        os.kill(s.daemons["sluice-smtpd"].pid, signal.SIGHUP)
        self.hup(s, r"reload: delivery runner restarted with the new configuration")
        self.assertTrue(st.wait_until(lambda: "in force for new sessions" in s.log(), st.TIMEOUT))

        self.send(s, "far@remote.test", b"Subject: two\r\n\r\nvia the second relay\r\n")
        self.send(s, "user@other.test", b"Subject: three\r\n\r\nto the new domain\r\n")
        self.assertTrue(st.wait_until(lambda: second.messages, st.TIMEOUT), s.log_tails())
        self.wait_files(s.maildir("user@other.test"), 1)
        self.wait_spool_empty(s)
        self.assertEqual(len(first.messages), 1, "nothing more through the old relay")
        self.assertEqual(len(second.messages), 1)
        self.assertIn(b"via the second relay", second.messages[0][2])
        self.assertEqual(s.daemons["sluice-delivery"].pid, pid, "reloaded in place")
        s.stop("sluice-delivery")  # clean exit 0, no sanitizer report

    def test_broken_config_and_fixed_key(self):
        s = self.start()
        s.write_config(delivery={"retry_initial": "soon"})
        self.hup(s, r"keeping the running configuration")
        with open(s.conf_path) as f:
            line = next(n for n, l in enumerate(f, 1) if l.startswith("retry_initial"))
        self.assertIn(f"reload: {s.conf_path}:{line}: retry_initial", s.log("sluice-delivery"))
        self.send(s, "user@example.test", b"Subject: still\r\n\r\ndelivering\r\n")
        self.wait_files(s.maildir("user@example.test"), 1)

        # a broken map is refused too
        s.write_config()
        with open(os.path.join(s.dir, "mailboxes"), "a") as f:
            f.write("lonely-key-without-value\n")
        self.hup(s, r"keeping the running configuration")
        self.assertRegex(s.log("sluice-delivery"),
                         rf"reload: {re.escape(os.path.join(s.dir, 'mailboxes'))}:\d+:")

        # the spool cannot move under a running runner: kept, with its line
        s.write_config(server={"spool": "elsewhere"}, delivery={"retry_initial": "1m"})
        self.hup(s, r"reload: delivery runner restarted with the new configuration")
        self.assertRegex(s.log("sluice-delivery"),
                         rf"reload: {re.escape(s.conf_path)}:\d+: \[server\] spool changed: it "
                         r"takes effect when sluice-delivery restarts")
        self.send(s, "alice@example.test", b"Subject: after\r\n\r\nsame spool\r\n")
        self.wait_files(s.maildir("alice@example.test"), 1)
        self.wait_spool_empty(s)
        self.assertFalse(os.path.exists(os.path.join(s.dir, "elsewhere", "queue")))
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 1)
        s.stop("sluice-delivery")


if __name__ == "__main__":
    import unittest
    unittest.main()
