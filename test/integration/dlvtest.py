"""dlvtest - helpers for the sluice-delivery integration tests (stdlib only),
on top of sluicetest (the shared harness, not edited here).

  DeliveryCase    SluiceCase + start(): a Sluice with smtpd and delivery
                  running, config overrides applied first
  send()          one message through smtplib; returns the queue id
  notify()        a datagram to run/delivery.sock ("flush", "flush ID")
  maildir_files() the files of a Maildir's new/ and cur/
  wait_files()    waits until a Maildir holds n messages
  parse_dsn()     a DSN as Python's email package sees it, checked to be a
                  multipart/report with its delivery-status fields
  Receiver        an aiosmtpd server on loopback answering per recipient
"""

import email
import email.policy
import os
import re
import socket
import time

import sluicetest as st
from sluicetest import SluiceCase

SENDER = "alice@example.test"


def maildir_files(path):
    """Contents of the files in path/new and path/cur, by name order."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    out.append(f.read())
    return out


def maildir_names(path):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            out += sorted(os.listdir(d))
    return out


def notify(s, text):
    """Sends one datagram to sluice-delivery's socket."""
    path = os.path.join(s.spool, "run", "delivery.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
        c.sendto(text.encode(), path)


def split_headers(data):
    """(header bytes, body bytes) of a Maildir file (LF line ends)."""
    i = data.find(b"\n\n")
    return (data, b"") if i < 0 else (data[:i + 1], data[i + 2:])


def parse_dsn(case, data):
    """Parses a DSN from a Maildir and checks the RFC 3464 structure.
    Returns (message, per-message fields, [per-recipient fields], original part)."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    case.assertEqual(msg.get_content_type(), "multipart/report", data[:2000])
    case.assertEqual(msg.get_param("report-type"), "delivery-status")
    case.assertTrue(msg["From"].startswith("Mail Delivery System <MAILER-DAEMON@"), msg["From"])
    case.assertEqual(msg["Auto-Submitted"], "auto-replied")
    parts = msg.get_payload()
    case.assertGreaterEqual(len(parts), 2)
    case.assertEqual(parts[0].get_content_type(), "text/plain")
    case.assertEqual(parts[1].get_content_type(), "message/delivery-status")
    # compat32 parses message/delivery-status into a list of header blocks.
    blocks = parts[1].get_payload()
    per_msg = dict(blocks[0].items())
    per_rcpt = [dict(b.items()) for b in blocks[1:]]
    case.assertIn("Reporting-MTA", per_msg)
    case.assertIn("Arrival-Date", per_msg)
    for r in per_rcpt:
        for k in ("Final-Recipient", "Action", "Status"):
            case.assertIn(k, r, r)
    orig = parts[2] if len(parts) > 2 else None
    return msg, per_msg, per_rcpt, orig


class Receiver:
    """aiosmtpd (python3-aiosmtpd) on 127.0.0.1:port in a thread. replies maps
    a recipient to its RCPT reply ("550 5.1.1 no such user"); others get 250.
    Accepted messages land in .messages as (mail_from, rcpt_tos, content)."""

    def __init__(self, case, replies=None):
        from aiosmtpd.controller import Controller
        self.replies = dict(replies or {})
        self.messages = []
        self.port = st.free_port()
        outer = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                reply = outer.replies.get(address)
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       envelope.original_content or envelope.content))
                return "250 2.0.0 accepted"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     decode_data=False)
        self.controller.start()
        case.addCleanup(self.controller.stop)


class DeliveryCase(SluiceCase):
    """A Sluice with smtpd and sluice-delivery running."""

    def start(self, delivery=None, aliases=None, mailboxes=None, users=("user", "alice", "bob"),
              start_delivery=True, mx=None, smtpd=None):
        """mx: {domain: Receiver}: MX records naming 127.0.0.1 and
        remote_port set to the (one) receiver's port."""
        s = self.sluice(start=False, users=users)
        for domain, rcv in (mx or {}).items():
            s.dns.mx(domain, f"mx.{domain}")
            s.dns.a(f"mx.{domain}", "127.0.0.1")
            delivery = dict(delivery or {}, remote_port=rcv.port)
        if aliases:
            s.aliases.update(aliases)
        if mailboxes:  # values may name {root} (the Maildirs' folder) and {dir}
            s.mailboxes.update({k: v.format(root=s.maildir_root, dir=s.dir)
                                for k, v in mailboxes.items()})
        if delivery or smtpd:
            s.write_config(delivery=delivery or {}, smtpd=smtpd or {})
        else:
            s.write_maps()
        s.start_smtpd()
        if start_delivery:
            s.start_delivery()
        return s

    def send(self, s, rcpts, body, sender=SENDER, mail_options=(), rcpt_options=()):
        """Sends with smtplib; returns the queue id from the 250 reply."""
        c = s.smtplib()
        c.ehlo("client.test")
        rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
        code, _ = c.mail(sender, list(mail_options))
        self.assertEqual(code, 250)
        for r in rcpts:
            code, text = c.rcpt(r, list(rcpt_options))
            self.assertEqual(code, 250, text)
        code, text = c.data(body)
        self.assertEqual(code, 250, text)
        c.quit()
        m = re.search(rb"queued as ([0-9A-F]{14})", text)
        self.assertIsNotNone(m, text)
        return m.group(1).decode()

    def wait_files(self, path, n, timeout=st.TIMEOUT, s=None):
        ok = st.wait_until(lambda: len(maildir_names(path)) >= n, timeout, 0.005)
        if not ok:
            self.fail_with_log(f"{path}: {len(maildir_names(path))} messages, expected {n}")
        return maildir_files(path)

    def wait_spool_empty(self, s, timeout=st.TIMEOUT):
        if not st.wait_until(lambda: not s.spool_ids(), timeout, 0.02):
            envs = "\n".join(repr(e) for e in s.envelopes().values())
            self.fail_with_log(f"spool not empty: {s.spool_ids()}\n{envs}")

    def wait_log(self, s, pattern, timeout=st.TIMEOUT, prog="sluice-delivery"):
        rx = re.compile(pattern)
        if not st.wait_until(lambda: rx.search(s.log(prog)), timeout, 0.02):
            self.fail_with_log(f"no log line matching {pattern!r}")
        return rx.search(s.log(prog))

    def wait_rcpt_state(self, s, qid, addr, state, timeout=st.TIMEOUT):
        def ok():
            try:
                env = s.envelope(qid)
            except FileNotFoundError:
                return False
            return any(r["rcpt"] == addr and r.get("rcpt-state") == state for r in env.rcpts)
        if not st.wait_until(ok, timeout, 0.02):
            self.fail_with_log(f"{qid}: <{addr}> never became {state}")
        return s.envelope(qid)
