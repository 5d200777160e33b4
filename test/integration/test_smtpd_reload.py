#!/usr/bin/python3
"""SIGHUP re-reads sluice.conf, the maps and the certificate.

A valid new config is in force for new sessions at once, while an open
session keeps the config it began with and is not dropped. Keys sluice-smtpd
cannot change in flight (listen, spool...) keep their running value, with a
FILE:LINE warning. An invalid config or map is refused as a whole, with its
problems logged as FILE:LINE, and everything stays as it was."""

import os
import re
import signal

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: reload\r\n\r\nbody\r\n"
APPLIED = "in force for new sessions"
REFUSED = "keeping the running configuration"


def conf_line(path, needle):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.startswith(needle):
                return n
    raise AssertionError(f"{needle!r} not in {path}")


class Reload(SluiceCase):
    def hup(self, s, marker):
        """Sends SIGHUP and waits for the reload's outcome line (marker) to
        appear once more in the log."""
        seen = s.log().count(marker)
        os.kill(s.smtpd().pid, signal.SIGHUP)
        self.assertTrue(st.wait_until(lambda: s.log().count(marker) > seen, timeout=10),
                        f"no {marker!r} after SIGHUP\n" + s.log_tails())

    def greeted_by(self, s):
        c = self.connect(s, ehlo=False)
        return c.greeting.lines[0].split()[0], c

    def test_new_config_for_new_sessions_old_for_open_ones(self):
        s = self.sluice()
        old = self.connect(s)
        self.assertReply(old.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(old.cmd("RCPT TO:<user@other.test>"), 554, "5.7.1",
                         "other.test is not local yet")

        s.local_domains.append("other.test")
        s.mailboxes["user@other.test"] = os.path.join(s.maildir_root, "other")
        s.write_config(server={"hostname": "mx2.example.test"},
                       smtpd={"max_recipients": 1,
                              "listen": [f"127.0.0.1:{s.port()} mx",
                                         f"127.0.0.1:{st.free_port()} mx"]},
                       domains={"local": " ".join(s.local_domains)})
        self.hup(s, APPLIED)
        log = s.log()
        self.assertIn("1 open session keeps the previous one", log)
        # listen cannot change in flight: reported at its line, and kept
        m = re.search(rf"reload: {re.escape(s.conf_path)}:(\d+): \[smtpd\] listen changed: "
                      r"it takes effect when sluice-smtpd restarts", log)
        self.assertIsNotNone(m, log)
        self.assertGreaterEqual(int(m.group(1)), conf_line(s.conf_path, "listen"))

        # a new session: new hostname, new local domain, new limit
        host, new = self.greeted_by(s)
        self.assertEqual(host, "mx2.example.test")
        self.assertReply(new.cmd("EHLO client.test"), 250)
        self.assertReply(new.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(new.cmd("RCPT TO:<user@other.test>"), 250)
        self.assertReply(new.cmd("RCPT TO:<user@example.test>"), 452, "4.5.3",
                         "max_recipients = 1 for new sessions")
        self.assertReply(new.cmd("DATA"), 354)
        self.assertQueued(new.cmd(BODY.decode() + "."))

        # the open session was not dropped and keeps its config: old hostname,
        # old limit of 100 recipients, other.test still not local
        self.assertReply(old.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(old.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(old.cmd("RCPT TO:<user@other.test>"), 554, "5.7.1")
        self.assertReply(old.cmd("DATA"), 354)
        qid = self.assertQueued(old.cmd(BODY.decode() + "."))
        self.assertIn(b"by mx.example.test (Sluice)", s.message(qid))
        self.assertReply(old.cmd("EHLO again.test"), 250)
        self.assertEqual(old.cmd("QUIT").code, 221)

        # the second listener from the new file was not bound
        self.assertEqual(len([l for l in s.config["smtpd"]["listen"]]), 2)
        port2 = int(s.config["smtpd"]["listen"][1].split(":")[1].split()[0])
        self.assertFalse(st.tcp_listening(port2))
        s.stop()  # a clean exit: the old config's last holder released it

    def test_invalid_config_is_refused_whole(self):
        s = self.sluice()
        s.write_config(server={"hostname": "mx2.example.test"},
                       smtpd={"max_recipients": "lots", "tls_cert": "/nonexistent/cert.pem"})
        self.hup(s, REFUSED)
        log = s.log()
        line = conf_line(s.conf_path, "max_recipients")
        self.assertIn(f"reload: {s.conf_path}:{line}: max_recipients", log)
        host, c = self.greeted_by(s)
        self.assertEqual(host, "mx.example.test", "the running config stays")
        self.assertTrue(s.smtpd().alive())

        # a broken map refuses the config that names it, too
        s.write_config(server={"hostname": "mx3.example.test"})
        with open(os.path.join(s.dir, "aliases"), "a") as f:
            f.write("lonely-key-without-value\n")
        self.hup(s, REFUSED)
        self.assertRegex(s.log(), rf"reload: {re.escape(os.path.join(s.dir, 'aliases'))}:\d+:")
        host, c = self.greeted_by(s)
        self.assertEqual(host, "mx.example.test")

        # fixed, it is taken
        s.write_config(server={"hostname": "mx3.example.test"})
        self.hup(s, APPLIED)
        host, c = self.greeted_by(s)
        self.assertEqual(host, "mx3.example.test")
        self.assertReply(c.cmd("EHLO client.test"), 250)
        self.assertQueued(c.transaction("a@remote.test", ["user@example.test"], BODY))
        s.stop()

    def test_unreadable_config_keeps_running(self):
        s = self.sluice()
        os.rename(s.conf_path, s.conf_path + ".moved")
        self.hup(s, REFUSED)
        self.assertIn(f"reload: {s.conf_path}", s.log())
        os.rename(s.conf_path + ".moved", s.conf_path)
        c = self.connect(s)
        self.assertQueued(c.transaction("a@remote.test", ["user@example.test"], BODY))


if __name__ == "__main__":
    import unittest
    unittest.main()
