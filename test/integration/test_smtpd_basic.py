#!/usr/bin/python3
"""sluice-smtpd: the dialogue (greeting, EHLO, commands, replies), policy on
the mx listener (local users, relay, postmaster, null sender), addresses,
DSN parameters, and real clients (smtplib, swaks)."""

import email.message
import re
import shutil
import socket
import subprocess

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: test\r\nFrom: alice@example.test\r\n\r\nHello.\r\n"


class Dialogue(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()

    def test_greeting(self):
        c = self.connect(self.s, ehlo=False)
        self.assertRegex(c.greeting.last, r"^mx\.example\.test ESMTP Sluice\b",
                         f"greeting: {c.greeting}")
        self.assertEqual(c.greeting.code, 220)

    def test_ehlo_extensions(self):
        c = self.connect(self.s, ehlo=False)
        r = self.assertReply(c.cmd("EHLO client.test"), 250)
        self.assertTrue(r.lines[0].startswith("mx.example.test"), f"EHLO first line: {r}")
        kw = st.ehlo_keywords(r)
        for ext in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                    "CHUNKING", "DSN"):
            self.assertIn(ext, kw, f"EHLO does not advertise {ext}: {r}")
        self.assertEqual(kw.get("SIZE"), str(self.s.cfg("smtpd", "max_message_size")),
                         f"SIZE parameter: {r}")

    def test_helo(self):
        c = self.connect(self.s, ehlo=False)
        r = self.assertReply(c.cmd("HELO client.test"), 250)
        self.assertTrue(r.last.startswith("mx.example.test"), f"HELO reply: {r}")
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        head, _ = st.split_received(self.s.message(qid))
        self.assertRegex(head.decode(), rf"with SMTP id {qid}\b", "HELO session is SMTP")

    def test_simple_commands(self):
        c = self.connect(self.s)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "NOOP")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET")
        self.assertReply(c.cmd("VRFY user@example.test"), 252, "2.x.x", "VRFY")
        self.assertReply(c.cmd("HELP"), 214, "2.x.x", "HELP")
        self.assertReply(c.cmd("noop"), 250, "2.0.0", "lower-case verb")
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", "QUIT")
        self.assertClosed(c, "after QUIT")

    def test_unknown_command(self):
        c = self.connect(self.s)
        self.assertReply(c.cmd("FROB"), 500, "5.5.x", "unknown verb")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "after an unknown verb")

    def test_every_reply_has_an_enhanced_code(self):
        """RFC 2034: every 2xx/4xx/5xx reply other than the greeting and the
        replies to HELO/EHLO carries a matching enhanced code on every line."""
        c = self.connect(self.s)
        replies = [
            c.cmd("NOOP"), c.cmd("HELP"), c.cmd("VRFY x"), c.cmd("FROB"),
            c.cmd("RCPT TO:<user@example.test>"),              # out of sequence
            c.cmd("MAIL FROM:<alice@example.test>"),
            c.cmd("MAIL FROM:<alice@example.test>"),           # nested MAIL
            c.cmd("RCPT TO:<nobody@example.test>"),
            c.cmd("RCPT TO:<someone@remote.test>"),
            c.cmd("RCPT TO:<user@example.test>"),
        ]
        r = c.cmd("DATA")
        self.assertReply(r, 354)
        c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        replies += [c.reply(), c.cmd("RSET"), c.cmd("QUIT")]
        for r in replies:
            self.assertTrue(r.enhanced_everywhere(), f"reply without a matching enhanced code: {r}")

    def test_sequence_errors(self):
        c = self.connect(self.s)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1", "RCPT before MAIL")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA before MAIL")
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250, "2.1.0")
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 503, "5.5.1", "nested MAIL")
        # RFC 5321 3.3: no valid recipient: 503 or 554
        self.assertReply(c.cmd("DATA"), (503, 554), "5.x.x", "DATA without RCPT")

    def test_rset_clears_the_transaction(self):
        c = self.connect(self.s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA after RSET")
        qid = self.assertQueued(c.transaction("bob@example.test", "alice@example.test", BODY))
        env = self.s.envelope(qid)
        self.assertEqual((env.sender, env.recipients), ("bob@example.test", ["alice@example.test"]))

    def test_queued_reply_and_files(self):
        c = self.connect(self.s)
        r = c.transaction("alice@example.test", "user@example.test", BODY)
        qid = self.assertQueued(r)
        self.assertEqual(self.s.spool_ids(), [qid])
        env = self.s.envelope(qid)
        self.assertEqual(env.sender, "alice@example.test", repr(env))
        self.assertEqual(env.recipients, ["user@example.test"], repr(env))
        self.assertEqual(env.rcpts[0].get("rcpt-state"), "pending", repr(env))
        self.assertTrue(env.complete, f"envelope has no end: line:\n{env!r}")
        head, rest = st.split_received(self.s.message(qid))
        self.assertEqual(rest, BODY)
        h = head.decode()
        self.assertRegex(h, rf"with E?SMTPS?A? id {qid}\b", f"Received: {h}")
        self.assertRegex(h, r"\bwith ESMTP id\b", f"an EHLO session is ESMTP: {h}")
        self.assertIn("for <user@example.test>", h, f"Received: {h}")
        self.assertIn("mx.example.test", h, f"Received: names the server: {h}")

    def test_several_transactions_in_one_session(self):
        c = self.connect(self.s)
        ids = []
        for i in range(3):
            body = b"Subject: n%d\r\n\r\nmessage %d\r\n" % (i, i)
            ids.append(self.assertQueued(c.transaction("alice@example.test", "user@example.test", body)))
        self.assertEqual(len(set(ids)), 3, f"queue ids not distinct: {ids}")
        self.assertEqual(sorted(ids), self.s.spool_ids())
        for i, qid in enumerate(ids):
            self.assertTrue(self.s.message(qid).endswith(b"message %d\r\n" % i))
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0")

    def test_half_closed_client_gets_every_reply(self):
        # A script (printf ... | nc -q) sends the whole dialogue, QUIT
        # included, then closes its sending side and only reads. The end of
        # its input must not cut the replies short: the message was sent, so
        # it must get its 250 (and the 221), and be queued exactly once.
        # Reading stops while the commit is under way; a reader that saw the
        # EOF then and closed would drop the 250 and cause a resend.
        c = self.connect(self.s)
        c.send(b"EHLO client.example.test\r\n")
        self.assertReply(c.reply(), 250)
        c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        self.assertReply(c.reply(), 250)
        self.assertReply(c.reply(), 250)
        self.assertReply(c.reply(), 354)
        c.send(BODY + b".\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        qid = self.assertQueued(c.reply())
        self.assertReply(c.reply(), 221, "2.0.0")
        self.assertTrue(c.closed(), "the server closes after QUIT")
        self.assertEqual(self.s.spool_ids(), [qid])

    def test_dot_unstuffing(self):
        c = self.connect(self.s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: dots\r\n\r\n..x\r\n..\r\n...\r\nend\r\n.\r\n")
        qid = self.assertQueued(c.reply())
        _, rest = st.split_received(self.s.message(qid))
        self.assertEqual(rest, b"Subject: dots\r\n\r\n.x\r\n.\r\n..\r\nend\r\n")

    def test_8bit_body_stored_byte_exact(self):
        c = self.connect(self.s)
        body = "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße, ☃\r\n".encode()
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", body,
                                              mail_params="BODY=8BITMIME"))
        self.assertEqual(st.split_received(self.s.message(qid))[1], body)

    def test_empty_message(self):
        c = self.connect(self.s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b".\r\n")
        qid = self.assertQueued(c.reply())
        self.assertEqual(st.split_received(self.s.message(qid))[1], b"")


class Policy(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)
        self.assertReply(self.c.cmd("MAIL FROM:<alice@remote.test>"), 250, "2.1.0")

    def test_unknown_local_user(self):
        self.assertReply(self.c.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1")
        self.assertReply(self.c.cmd("RCPT TO:<nobody@localhost>"), 550, "5.1.1")

    def test_local_user_domain_case_insensitive(self):
        self.assertReply(self.c.cmd("RCPT TO:<user@EXAMPLE.Test>"), 250, "2.1.5")

    def test_alias(self):
        self.assertReply(self.c.cmd("RCPT TO:<abuse@example.test>"), 250, "2.1.5")

    def test_relay_denied(self):
        self.assertReply(self.c.cmd("RCPT TO:<someone@remote.test>"), 554, "5.7.1")
        self.assertReply(self.c.cmd("RCPT TO:<user%remote.test@example.test>"), "5xx", "5.x.x",
                         "percent hack")
        self.assertReply(self.c.cmd("RCPT TO:<@example.test:someone@remote.test>"), 554, "5.7.1",
                         "source route to a remote domain")
        self.assertReply(self.c.cmd("DATA"), (503, 554), "5.x.x", "DATA without recipients")
        self.assertEqual(self.s.spool_ids(), [])

    def test_postmaster_without_domain(self):
        self.assertReply(self.c.cmd("RCPT TO:<postmaster>"), 250, "2.1.5")
        self.assertReply(self.c.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5", "any case")
        self.assertReply(self.c.cmd("RCPT TO:<postmaster@example.test>"), 250, "2.1.5")

    def test_bad_recipient_syntax(self):
        for bad in ("<a b@example.test>", "<user@>", "<@example.test>", "user@example.test>",
                    "<user@exa mple.test>", "<user@@example.test>", "<>"):
            self.assertReply(self.c.cmd(f"RCPT TO:{bad}"), 501, "5.1.3", f"RCPT TO:{bad}")

    def test_bad_sender_syntax(self):
        self.assertReply(self.c.cmd("RSET"), 250)
        for bad in ("<a b@example.test>", "<@@bad>", "<user@>", "<user@@example.test>"):
            self.assertReply(self.c.cmd(f"MAIL FROM:{bad}"), 501, "5.1.7", f"MAIL FROM:{bad}")

    def test_too_long_local_part(self):
        local = "a" * 65
        self.assertReply(self.c.cmd(f"RCPT TO:<{local}@example.test>"), 501, "5.1.3",
                         "local part over 64 octets (RFC 5321 4.5.3.1.1)")

    def test_unknown_parameter(self):
        self.assertReply(self.c.cmd("RCPT TO:<user@example.test> FROB=1"), 555, "5.5.4")


class TrustedRelay(SluiceCase):
    def test_trusted_network_may_relay(self):
        s = self.sluice(start=False)
        s.write_config(smtpd={"trusted_networks": "127.0.0.0/8"})
        s.start_smtpd()
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<someone@remote.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(BODY + b".\r\n")
        qid = self.assertQueued(c.reply())
        self.assertEqual(s.envelope(qid).recipients, ["someone@remote.test"])

    def test_other_network_may_not(self):
        s = self.sluice(start=False)
        s.write_config(smtpd={"trusted_networks": "10.0.0.0/8 ::1/128"})
        s.start_smtpd()
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<someone@remote.test>"), 554, "5.7.1")


class Envelopes(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)

    def test_null_sender(self):
        qid = self.assertQueued(self.c.transaction("", "user@example.test", BODY))
        self.assertIn(self.s.envelope(qid).sender, ("", "<>"), repr(self.s.envelope(qid)))

    def test_dsn_parameters_stored(self):
        self.assertReply(self.c.cmd("MAIL FROM:<alice@example.test> RET=HDRS ENVID=abc"), 250, "2.1.0")
        self.assertReply(self.c.cmd("RCPT TO:<user@example.test> NOTIFY=SUCCESS,FAILURE "
                                    "ORCPT=rfc822;x@example.test"), 250, "2.1.5")
        self.assertReply(self.c.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER"), 250, "2.1.5")
        self.assertReply(self.c.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")
        self.assertReply(self.c.cmd("DATA"), 354)
        self.c.send(BODY + b".\r\n")
        env = self.s.envelope(self.assertQueued(self.c.reply()))
        self.assertEqual(env.get("envid"), "abc", repr(env))
        self.assertEqual((env.get("ret") or "").lower(), "hdrs", repr(env))
        user, alice, bob = env.rcpts
        notify = set((user.get("rcpt-notify") or "").lower().replace(" ", "").split(","))
        self.assertEqual(notify, {"success", "failure"}, repr(env))
        self.assertEqual(user.get("rcpt-orcpt", "").lower(), "rfc822;x@example.test", repr(env))
        self.assertEqual((alice.get("rcpt-notify") or "").lower(), "never", repr(env))
        self.assertNotIn("rcpt-orcpt", bob, repr(env))

    def test_bad_dsn_parameters(self):
        self.assertReply(self.c.cmd("MAIL FROM:<alice@example.test> RET=SOME"), 501, "5.5.4")
        self.assertReply(self.c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(self.c.cmd("RCPT TO:<user@example.test> NOTIFY=NEVER,SUCCESS"), 501, "5.5.4")
        self.assertReply(self.c.cmd("RCPT TO:<user@example.test> ORCPT=no-type"), 501, "5.5.4")

    def test_smtputf8(self):
        self.assertReply(self.c.cmd("MAIL FROM:<jöran@example.test>"), 553, "5.6.7",
                         "non-ASCII sender without SMTPUTF8 (RFC 6531 3.7.4.1)")
        self.assertReply(self.c.cmd("MAIL FROM:<jöran@example.test> SMTPUTF8"), 250, "2.1.0")
        self.assertReply(self.c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(self.c.cmd("DATA"), 354)
        self.c.send("Subject: ü\r\n\r\nü\r\n.\r\n".encode())
        env = self.s.envelope(self.assertQueued(self.c.reply()))
        self.assertEqual(env.sender, "jöran@example.test", repr(env))

    def test_many_recipients_received_has_no_for(self):
        qid = self.assertQueued(self.c.transaction(
            "alice@example.test", ["user@example.test", "bob@example.test"], BODY))
        head, _ = st.split_received(self.s.message(qid))
        self.assertNotIn(b"for <", head, "Received: must not list several recipients")
        self.assertEqual(self.s.envelope(qid).recipients, ["user@example.test", "bob@example.test"])


class RealClients(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()

    def test_smtplib_sendmail(self):
        smtp = self.s.smtplib()
        self.assertEqual(smtp.ehlo()[0], 250)
        refused = smtp.sendmail("alice@example.test", ["user@example.test", "bob@example.test"],
                                BODY)
        self.assertEqual(refused, {})
        smtp.quit()
        ids = self.s.spool_ids()
        self.assertEqual(len(ids), 1)
        self.assertEqual(self.s.envelope(ids[0]).recipients, ["user@example.test", "bob@example.test"])

    def test_smtplib_refused_recipient_reported(self):
        smtp = self.s.smtplib()
        refused = smtp.sendmail("alice@example.test", ["user@example.test", "nobody@example.test"],
                                BODY)
        self.assertEqual(list(refused), ["nobody@example.test"])
        self.assertEqual(refused["nobody@example.test"][0], 550)
        smtp.quit()

    def test_smtplib_data_reply(self):
        smtp = self.s.smtplib()
        smtp.ehlo()
        self.assertEqual(smtp.mail("alice@example.test")[0], 250)
        self.assertEqual(smtp.rcpt("user@example.test")[0], 250)
        code, text = smtp.data(BODY)
        self.assertEqual(code, 250)
        self.assertRegex(text.decode(), r"^2\.0\.0 Ok: queued as [0-9A-F]{14}$")
        smtp.quit()

    def test_smtplib_send_message(self):
        msg = email.message.EmailMessage()
        msg["From"] = "alice@example.test"
        msg["To"] = "user@example.test"
        msg["Subject"] = "Grüße"
        msg.set_content("Hello ünïcode\n.\n.leading dot\n")
        smtp = self.s.smtplib()
        self.assertEqual(smtp.send_message(msg), {})
        smtp.quit()
        (qid,) = self.s.spool_ids()
        _, rest = st.split_received(self.s.message(qid))
        self.assertIn(b"\r\n.\r\n.leading dot\r\n", rest)
        self.assertTrue(rest.startswith(b"From: alice@example.test\r\n"), rest[:200])

    def test_swaks(self):
        swaks = shutil.which("swaks")
        if not swaks:
            self.skipTest("swaks is not installed (scripts/deps installs it)")
        p = subprocess.run([swaks, "--server", f"127.0.0.1:{self.s.port()}",
                            "--to", "user@example.test", "--from", "alice@example.test",
                            "--helo", "client.test", "--timeout", "30"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, f"swaks failed:\n{p.stdout}\n{p.stderr}\n{self.server_logs()}")
        m = re.search(r"queued as ([0-9A-F]{14})", p.stdout)
        self.assertTrue(m, f"swaks transcript has no 'queued as':\n{p.stdout}")
        self.assertEqual(self.s.spool_ids(), [m.group(1)])


if __name__ == "__main__":
    st.main()
