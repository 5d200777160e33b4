#!/usr/bin/python3
"""`sluice sendmail` (and the program run as `sendmail` / `mailq`): it
submits through sluice-smtpd's unix socket, so what lands in the spool is
what SMTP would give (Received from the uid, Date, Message-ID); -t reads
To/Cc/Bcc and drops Bcc; -f, -F, -i; line ends and long lines; exit codes
from sysexits.h with a one-line reason; compatibility flags; and the
install rules that put sendmail and mailq beside sluice."""

import os
import pwd
import re
import shutil
import subprocess
import tempfile

import sluicetest as st
from sluicetest import SluiceCase

SLUICE = os.path.join(st.BIN, "sluice")
EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 64, 65, 67, 75
LOGIN = pwd.getpwuid(os.getuid()).pw_name


def headers_of(msg):
    """The header section of a stored message, unfolded, as [(name, value)]."""
    head = msg.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line)
        else:
            name, _, value = line.partition(":")
            out.append((name, value.strip()))
    return out


def body_of(msg):
    return msg.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in msg else b""


class SendmailCase(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()

    def sendmail(self, args, data, argv0=None, code=0):
        """Runs `sluice -c CONF sendmail ARGS` (or a program named argv0 with
        $SLUICE_CONFIG); checks the exit code; returns the process."""
        if argv0:
            cmd = [argv0] + args
            env = dict(os.environ, SLUICE_CONFIG=self.s.conf_path)
        else:
            cmd = [SLUICE, "-c", self.s.conf_path, "sendmail"] + args
            env = None
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=st.TIMEOUT * 4, env=env)
        err = p.stderr.decode("utf-8", "replace")
        for marker in st.SANITIZER_MARKERS:
            if marker in err:
                self.fail(f"sanitizer report:\n{err}")
        if code is not None and p.returncode != code:
            self.fail_with_log(f"sendmail {args}: exit {p.returncode}, expected {code}\n{err}")
        p.err = err
        return p

    def only_message(self):
        ids = self.s.spool_ids()
        self.assertEqual(len(ids), 1, ids)
        return ids[0], self.s.envelope(ids[0]), self.s.message(ids[0])


class Submit(SendmailCase):
    def test_recipients_from_arguments(self):
        self.sendmail(["user@example.test", "Bob <bob@example.test>, alice"],
                      b"Subject: args\n\nhello\n")
        qid, env, msg = self.only_message()
        self.assertEqual(env.recipients, ["user@example.test", "bob@example.test",
                                          "alice@example.test"], "alice qualified")
        self.assertEqual(env.sender, f"{LOGIN}@example.test", "default sender")
        self.assertEqual(env.get("proto"), "LOCAL")
        h = dict(headers_of(msg))
        self.assertTrue(msg.startswith(b"Received: by mx.example.test (Sluice, from userid %d)"
                                       % os.getuid()), msg[:200])
        self.assertIn("Date", h, "added by the server")
        self.assertIn("Message-ID", h)
        self.assertRegex(h["From"], rf"<?{LOGIN}@example.test>?$", "From: added")
        self.assertEqual(body_of(msg), b"hello\r\n", "LF converted to CRLF")

    def test_t_with_bcc(self):
        data = (b"From: Alice <alice@example.test>\n"
                b"To: User <user@example.test>,\n"
                b"  \"Bob, B.\" <bob@example.test>\n"
                b"Cc: friends: alice@example.test;\n"
                b"Bcc: secret@remote.test\n"
                b"Subject: dash t\n\nbody\n")
        self.sendmail(["-t", "-f", "alice@example.test"], data)
        _, env, msg = self.only_message()
        self.assertEqual(env.sender, "alice@example.test")
        self.assertEqual(sorted(env.recipients), ["alice@example.test", "bob@example.test",
                                                  "secret@remote.test", "user@example.test"])
        names = [n.lower() for n, _ in headers_of(msg)]
        self.assertNotIn("bcc", names, "the Bcc header is gone")
        self.assertNotIn(b"secret@remote.test", msg)
        self.assertIn("to", names)
        self.assertIn("cc", names)
        self.assertEqual(dict(headers_of(msg))["From"], "Alice <alice@example.test>",
                         "an existing From: is kept")

    def test_t_resent_and_args(self):
        data = (b"To: user@example.test\nResent-To: bob@example.test\nResent-Bcc: x@remote.test\n"
                b"Subject: resent\n\nbody\n")
        self.sendmail(["-t", "alice@example.test"], data)
        _, env, msg = self.only_message()
        self.assertEqual(sorted(env.recipients),
                         ["alice@example.test", "bob@example.test", "x@remote.test"],
                         "Resent-* win over To, arguments are added")
        self.assertNotIn(b"Resent-Bcc", msg)

    def test_f_and_F(self):
        self.sendmail(["-f", "<robot@example.test>", "-F", "Build Robot", "user@example.test"],
                      b"Subject: f\n\nx\n")
        _, env, msg = self.only_message()
        self.assertEqual(env.sender, "robot@example.test")
        self.assertEqual(dict(headers_of(msg))["From"], "Build Robot <robot@example.test>")

    def test_null_sender_and_special_name(self):
        self.sendmail(["-f", "<>", "-F", "Smith, \"J\"", "user@example.test"], b"x\n")
        _, env, msg = self.only_message()
        self.assertEqual(env.sender, "")
        self.assertEqual(dict(headers_of(msg))["From"],
                         f"\"Smith, \\\"J\\\"\" <{LOGIN}@example.test>")

    def test_dot_handling(self):
        data = b"Subject: dots\n\nbefore\n.\nafter\n..two\n"
        self.sendmail(["user@example.test"], data)
        _, _, msg = self.only_message()
        self.assertEqual(body_of(msg), b"before\r\n", "a lone dot ends the input")
        self.s.stop()
        shutil.rmtree(self.s.spool_path("queue"))
        os.makedirs(self.s.spool_path("queue"), mode=0o700)
        self.s.start_smtpd()
        for flag in (["-i"], ["-oi"]):
            self.sendmail(flag + ["user@example.test"], data)
        for qid in self.s.spool_ids():
            self.assertEqual(body_of(self.s.message(qid)), b"before\r\n.\r\nafter\r\n..two\r\n",
                             "-i: dots are text (stuffing is undone by the server)")

    def test_line_ends_and_long_lines(self):
        long_line = b"y" * 2500
        data = b"Subject: lines\r\nX-Long: " + b"h" * 1500 + b"\n\ncrlf\r\nlf\nbare\rcr\n" + \
            long_line + b"\n"
        self.sendmail(["user@example.test"], data)
        _, _, msg = self.only_message()
        self.assertNotIn(b"\r\r", msg)
        for line in msg.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
            self.assertNotIn(b"\n", line)
            self.assertNotIn(b"\r", line)
        body = body_of(msg)
        self.assertTrue(body.startswith(b"crlf\r\nlf\r\nbarecr\r\n"), body[:100])
        self.assertEqual(body.count(b"y"), 2500, "long lines are broken, not cut")
        xlong = dict(headers_of(msg))["X-Long"]
        self.assertEqual(xlong.replace(" ", ""), "h" * 1500, "folded, not cut")

    def test_large_message_streams(self):
        body = b"".join(b"%07d " % i + b"z" * 90 + b"\n" for i in range(60000))  # 5.8 MB
        self.sendmail(["user@example.test"], b"Subject: big\n\n" + body)
        _, env, msg = self.only_message()
        self.assertEqual(body_of(msg), body.replace(b"\n", b"\r\n"))

    def test_no_headers_at_all(self):
        self.sendmail(["user@example.test"], b"just a line\n")
        _, _, msg = self.only_message()
        self.assertEqual(body_of(msg), b"just a line\r\n")
        self.assertIn("From", dict(headers_of(msg)))

    def test_verbose_dialogue(self):
        p = self.sendmail(["-v", "user@example.test"], b"Subject: v\n\nx\n")
        self.assertIn(">>> MAIL FROM:<", p.err)
        self.assertIn("<<< 250", p.err)
        qid = self.s.spool_ids()[0]
        self.assertIn(f"queued as {qid}", p.err)

    def test_compatibility_flags(self):
        p = self.sendmail(["-odi", "-oem", "-U", "-L", "tag", "-X", "/tmp/log", "-O", "x=y",
                           "-G", "-h", "5", "-N", "success,failure", "-R", "hdrs", "-B",
                           "8BITMIME", "-V", "env+id", "-oi", "-bm", "user@example.test"],
                          b"Subject: compat\n\nx\n")
        for flag in ("-odi", "-oem", "-U", "-L tag", "-X /tmp/log", "-O x=y", "-G", "-h 5"):
            self.assertIn(f"{flag} ignored", p.err)
        _, env, _ = self.only_message()
        self.assertEqual(env.rcpts[0].get("rcpt-notify"), "SUCCESS,FAILURE")
        self.assertEqual(env.get("ret"), "HDRS")
        self.assertEqual(env.get("body"), "8BITMIME")
        self.assertEqual(env.get("envid"), "env+2Bid")

    def test_bp_and_q(self):
        self.sendmail(["user@example.test"], b"Subject: q\n\nx\n")
        qid = self.s.spool_ids()[0]
        p = self.sendmail(["-bp"], b"")
        self.assertIn(qid, p.stdout.decode())
        p = self.sendmail(["-q"], b"")
        self.assertIn("sluice-delivery is not running", p.err)
        self.sendmail(["-q1h"], b"")


class ExitCodes(SendmailCase):
    def test_server_down(self):
        self.s.stop()
        p = self.sendmail(["user@example.test"], b"Subject: x\n\nx\n", code=EX_TEMPFAIL)
        sock = os.path.join(self.s.spool, "run", "submit.sock")
        self.assertIn(f"sluice-smtpd is not running (no {sock})", p.err)
        self.assertEqual(len(p.err.strip().splitlines()), 1, "one line")

    def test_refused_recipient_sends_nothing(self):
        p = self.sendmail(["user@example.test", "nobody@example.test"], b"Subject: x\n\nx\n",
                          code=EX_NOUSER)
        self.assertIn("recipient <nobody@example.test> refused: 550", p.err)
        self.assertEqual(self.s.spool_ids(), [], "all or nothing")

    def test_usage_errors(self):
        p = self.sendmail([], b"x\n", code=EX_USAGE)
        self.assertIn("no recipients", p.err)
        p = self.sendmail(["-t"], b"Subject: none\n\nx\n", code=EX_USAGE)
        self.assertIn("no recipient addresses found", p.err)
        self.sendmail(["-f"], b"", code=EX_USAGE)
        p = self.sendmail(["john smith"], b"x\n", code=EX_USAGE)
        self.assertIn("a name needs <address>", p.err)
        self.sendmail(["-bs"], b"", code=EX_USAGE)
        self.assertEqual(self.s.spool_ids(), [])

    def test_bad_header_address(self):
        p = self.sendmail(["-t"], b"To: <unterminated@example.test\n\nx\n", code=EX_DATAERR)
        self.assertIn("To: header", p.err)

    def test_header_too_large(self):
        data = b"".join(b"X-Fill-%d: %s\n" % (i, b"f" * 900) for i in range(1300))
        p = self.sendmail(["-t"], data + b"To: user@example.test\n\nx\n", code=EX_DATAERR)
        self.assertIn("header section is larger than", p.err)

    def test_message_too_large(self):
        self.s.stop()
        self.s.write_config(smtpd={"max_message_size": 10000})
        self.s.start_smtpd()
        p = self.sendmail(["user@example.test"], b"Subject: big\n\n" + (b"x" * 70 + b"\n") * 300,
                          code=EX_DATAERR)
        self.assertIn("552", p.err)
        self.assertEqual(self.s.spool_ids(), [])


class ProgramNames(SendmailCase):
    def links(self):
        d = tempfile.mkdtemp(prefix="sluice-names-")
        self.addCleanup(shutil.rmtree, d, True)
        for name in ("sendmail", "mailq"):
            os.symlink(SLUICE, os.path.join(d, name))
        return os.path.join(d, "sendmail"), os.path.join(d, "mailq")

    def test_sendmail_and_mailq_by_name(self):
        sendmail, mailq = self.links()
        self.sendmail(["-t", "-oi"], b"To: user@example.test\nSubject: by name\n\n.\nx\n",
                      argv0=sendmail)
        qid, env, msg = self.only_message()
        self.assertEqual(body_of(msg), b".\r\nx\r\n")
        p = subprocess.run([mailq], capture_output=True, text=True, timeout=st.TIMEOUT,
                           env=dict(os.environ, SLUICE_CONFIG=self.s.conf_path))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(qid, p.stdout)
        self.assertIn("<user@example.test>", p.stdout)

    def test_install_creates_links(self):
        build = os.path.dirname(st.BIN)
        cmake = shutil.which("cmake")
        if not cmake or not os.path.exists(os.path.join(build, "CMakeCache.txt")):
            self.skipTest("no cmake or no build tree beside SLUICE_BIN")
        dest = tempfile.mkdtemp(prefix="sluice-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        p = subprocess.run([cmake, "--install", build, "--prefix", "/usr/local"],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, DESTDIR=dest))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        sbin = os.path.join(dest, "usr/local/sbin")
        for name in ("sendmail", "mailq"):
            path = os.path.join(sbin, name)
            self.assertTrue(os.path.islink(path), f"{path}: {os.listdir(sbin)}")
            self.assertEqual(os.readlink(path), "sluice", "a relative link beside sluice")
        self.assertTrue(os.access(os.path.join(sbin, "sluice"), os.X_OK))


if __name__ == "__main__":
    st.main()
