#!/usr/bin/python3
"""The relayhost (smarthost) with AUTH, end to end: sluice-smtpd accepts
remote mail from a trusted client, sluice-delivery sends it to the relayhost
named in sluice.conf, over STARTTLS, logging in with the user and password
of the relayhost_auth file. The relayhost is aiosmtpd (python3-aiosmtpd) with
STARTTLS and AUTH required, as a provider's submission port has them.

- the right password: delivered through the relayhost, as that user, over
  TLS; the recipient's relay is the relayhost; nothing looks up MX records;
- a wrong password: the relayhost's 535 defers the recipient (the admin
  fixes the file), it never bounces, and the log says why;
- a relayhost without TLS: the password is not sent in clear; deferred."""

import os
import shutil
import ssl
import tempfile
import warnings

import sluicetest as st
from dlvtest import DeliveryCase


class AuthRelay:
    """aiosmtpd on 127.0.0.1:port in a thread. tls: offer STARTTLS and
    require it and AUTH before MAIL; otherwise plain, still requiring AUTH.
    Accepted messages land in .messages as (login, tls, mail_from,
    rcpt_tos, content)."""

    def __init__(self, case, user, password, tls=True):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages = []
        self.logins = []
        self.port = st.free_port()
        outer = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            outer.logins.append((auth_data.login.decode()
                                 if isinstance(auth_data, LoginPassword) else None, ok))
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                data = session.auth_data
                login = data.login.decode() if isinstance(data, LoginPassword) else None
                outer.messages.append((login, session.ssl is not None, envelope.mail_from,
                                       list(envelope.rcpt_tos),
                                       envelope.original_content or envelope.content))
                return "250 2.0.0 accepted"

        kw = dict(authenticator=authenticator, auth_required=True, decode_data=False)
        if tls:
            cert, key = st.test_cert()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            kw.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
        else:
            # What this case is about; aiosmtpd warns of it, rightly.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            kw.update(auth_require_tls=False)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()
        case.addCleanup(self.controller.stop)


class RelayhostAuth(DeliveryCase):
    def start_with(self, relay, user, password):
        folder = tempfile.mkdtemp(prefix="sluice-relayauth-")
        self.addCleanup(shutil.rmtree, folder, True)
        auth = os.path.join(folder, "relay.auth")
        with open(auth, "w") as f:
            f.write(f"{user} {password}\n")
        os.chmod(auth, 0o600)
        return self.start(delivery={"relayhost": f"[127.0.0.1]:{relay.port}",
                                    "relayhost_auth": auth},
                          smtpd={"trusted_networks": "127.0.0.1"})

    def test_delivered_through_the_relayhost_as_its_user(self):
        relay = AuthRelay(self, "sluice-relay", "s3cret-pass")
        s = self.start_with(relay, "sluice-relay", "s3cret-pass")
        qid = self.send(s, ["far@remote.test", "other@elsewhere.test"],
                        b"Subject: via the smarthost\r\n\r\nrelayed with AUTH\r\n")
        self.assertTrue(st.wait_until(lambda: relay.messages, st.TIMEOUT), s.log_tails())
        self.wait_spool_empty(s)
        self.assertEqual(len(relay.messages), 1, "one transaction for both recipients")
        login, tls, sender, rcpts, content = relay.messages[0]
        self.assertEqual(login, "sluice-relay")
        self.assertTrue(tls, "the password went over TLS only")
        self.assertEqual(sorted(rcpts), ["far@remote.test", "other@elsewhere.test"])
        self.assertIn(b"relayed with AUTH", content)
        log = s.log("sluice-delivery")
        # remote.test and elsewhere.test have no MX in the test DNS: a
        # bracketed relayhost is used as is.
        for rcpt in ("far@remote\\.test", "other@elsewhere\\.test"):
            self.assertRegex(log, rf"{qid}: to=<{rcpt}>, relay=\S*127\.0\.0\.1\S*, "
                                  rf"delay=\S+, tls=(?!none)\S+, .*status=sent")

    def test_wrong_password_defers_and_says_why(self):
        relay = AuthRelay(self, "sluice-relay", "right")
        s = self.start_with(relay, "sluice-relay", "wrong")
        qid = self.send(s, "far@remote.test", b"Subject: refused\r\n\r\nbad password\r\n")
        self.wait_rcpt_state(s, qid, "far@remote.test", "deferred")
        self.assertEqual(relay.messages, [])
        self.assertIn(("sluice-relay", False), relay.logins)
        self.wait_log(s, rf"{qid}: AUTH to .*failed: 535")
        env = s.envelope(qid)
        rcpt = env.rcpts[0]
        self.assertTrue(rcpt["rcpt-last-reply"].startswith("535"), rcpt)
        self.assertEqual(rcpt["rcpt-dsn-sent"], "no", "deferred, never bounced")

    def test_no_password_in_clear(self):
        relay = AuthRelay(self, "sluice-relay", "s3cret", tls=False)
        s = self.start_with(relay, "sluice-relay", "s3cret")
        qid = self.send(s, "far@remote.test", b"Subject: clear\r\n\r\nno TLS there\r\n")
        self.wait_rcpt_state(s, qid, "far@remote.test", "deferred")
        self.assertEqual(relay.logins, [], "the password never left without TLS")
        self.assertEqual(relay.messages, [])
        self.wait_log(s, r"not sending the relayhost password to .* without TLS")


if __name__ == "__main__":
    st.main()
