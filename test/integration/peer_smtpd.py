#!/usr/bin/python3
"""peer_smtpd.py - a scriptable receiving MTA for the SMTP client tests.

Built on python3-aiosmtpd (Debian). One process serves several listeners,
each on its own loopback address and with its own behaviour, so one peer
covers every test case:

    peer_smtpd.py --port 2525 --record DIR [--cert C --key K]
                  [--rules FILE] [--auth-user U --auth-pass P]
                  --listen 127.0.0.2:tls,dsn,utf8 --listen 127.0.0.3:size=1000,nopipelining ...

Listener options (comma-separated after the address):
    tls           offer STARTTLS (needs --cert/--key)
    dsn           offer DSN; RET, ENVID, NOTIFY and ORCPT are accepted and recorded
    utf8          offer SMTPUTF8
    nopipelining  do not announce PIPELINING (it is announced by default)
    size=N        announce SIZE N and enforce it (default: 33554432)
    auth          offer AUTH PLAIN LOGIN (after STARTTLS) and require it
    badtls        offer STARTTLS, answer 220, then send garbage instead of TLS
    slow=S        wait S seconds before the greeting
    greet=CODE    greet with CODE (e.g. 554) instead of 220
    flood         send an endless multi-line greeting

Rules file: "ADDRESS REPLY..." per line (e.g. "later@a.test 451 4.3.0 try later");
recipients not listed get "250 2.1.5 OK". The key "DATA" sets the reply after
the data (default "250 2.0.0 OK queued").

Records, in DIR: conns.txt gets one line per connection ("IP"); each message
gives msg-N.txt ("key value" lines: ip, tls, auth, ehlo, from, mail_opt, rcpt,
rcpt_opt) and msg-N.eml (the data exactly as received, dots unstuffed).
"READY" is printed on stdout once every listener is bound. Loopback only.
"""
import argparse
import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

SEQ = [0]


def record_line(path, text):
    with open(path, "a", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text + "\n")


class Handler:
    def __init__(self, opts, args, rules):
        self.opts = opts
        self.args = args
        self.rules = rules

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        last = responses[-1]
        body = [r for r in responses[:-1]]
        if "utf8" not in self.opts:
            body = [r for r in body if "SMTPUTF8" not in r]
        if "nopipelining" not in self.opts:
            body.append("250-PIPELINING")
        if "dsn" in self.opts:
            body.append("250-DSN")
        body.append("250-ENHANCEDSTATUSCODES")
        return body + [last]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rules.get(address.lower())
        if reply and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        SEQ[0] += 1
        base = os.path.join(self.args.record, "msg-%d" % SEQ[0])
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.replace(base + ".eml.tmp", base + ".eml")
        lines = ["ip %s" % server.my_ip,
                 "tls %s" % ("yes" if server._tls_protocol else "no"),
                 "auth %s" % (session.auth_data.login.decode()
                              if isinstance(session.auth_data, LoginPassword) else "-"),
                 "ehlo %s" % getattr(session, "host_name", "-"),
                 "from %s" % envelope.mail_from]
        lines += ["mail_opt %s" % o for o in envelope.mail_options]
        lines += ["mail_opt %s" % o for o in getattr(envelope, "dsn_mail", [])]
        lines += ["rcpt %s" % r for r in envelope.rcpt_tos]
        lines += ["rcpt_opt %s" % o for o in envelope.rcpt_options]
        with open(base + ".txt.tmp", "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(base + ".txt.tmp", base + ".txt")
        return self.rules.get("data", "250 2.0.0 OK queued")


class PeerSMTP(SMTP):
    """aiosmtpd refuses parameters it does not know; a DSN peer takes RFC 3461's."""

    line_length_limit = 10000

    def __init__(self, handler, my_ip, opts, **kw):
        super().__init__(handler, **kw)
        self.my_ip = my_ip
        self.opts = opts

    def _split_dsn(self, arg, keys):
        if arg is None or "dsn" not in self.opts:
            return arg, []
        keep, dsn = [], []
        for w in arg.split(" "):
            if w.split("=", 1)[0].upper() in keys and "=" in w:
                dsn.append(w)
            else:
                keep.append(w)
        return " ".join(keep), dsn

    async def smtp_MAIL(self, arg):
        arg, dsn = self._split_dsn(arg, ("RET", "ENVID"))
        await super().smtp_MAIL(arg)
        if self.envelope.mail_from is not None:
            self.envelope.dsn_mail = dsn

    async def smtp_RCPT(self, arg):
        arg, dsn = self._split_dsn(arg, ("NOTIFY", "ORCPT"))
        before = len(self.envelope.rcpt_tos)
        await super().smtp_RCPT(arg)
        if len(self.envelope.rcpt_tos) > before:
            self.envelope.rcpt_options.extend(dsn)

    async def smtp_STARTTLS(self, arg):
        if "badtls" in self.opts:
            await self.push("220 2.0.0 Ready to start TLS")
            await asyncio.sleep(0.05)
            self._writer.write(b"this is not TLS\r\n" * 8)
            await self._writer.drain()
            self.transport.close()
            return
        await super().smtp_STARTTLS(arg)


async def misbehave(opts, reader, writer):
    """Listeners that never become a normal session."""
    try:
        if "slow" in opts:
            await asyncio.sleep(float(opts["slow"]))
        if "flood" in opts:
            for i in range(100000):
                writer.write(b"220-flooding you with greeting lines %d\r\n" % i)
                if i % 100 == 0:
                    await writer.drain()
        code = opts.get("greet", "220")
        writer.write(("%s peer.test ESMTP\r\n" % code).encode())
        await writer.drain()
        await reader.read(65536)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def parse_listen(s):
    ip, _, rest = s.partition(":")
    opts = {}
    for o in filter(None, rest.split(",")):
        k, _, v = o.partition("=")
        opts[k] = v
    return ip, opts


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--listen", action="append", default=[])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--rules")
    ap.add_argument("--auth-user", default="alice")
    ap.add_argument("--auth-pass", default="secret")
    args = ap.parse_args()

    rules = {}
    if args.rules:
        with open(args.rules, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, _, v = line.partition(" ")
                    rules[k.lower()] = v.strip()

    tls_ctx = None
    if args.cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == args.auth_user
              and auth_data.password.decode() == args.auth_pass)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    loop = asyncio.get_running_loop()
    servers = []
    for spec in args.listen:
        ip, opts = parse_listen(spec)
        assert ip.startswith("127."), "loopback only"

        def counted(factory, ip=ip):
            def make():
                record_line(os.path.join(args.record, "conns.txt"), ip)
                return factory()
            return make

        if {"slow", "flood", "greet"} & opts.keys():
            async def cb(r, w, opts=opts, ip=ip):
                record_line(os.path.join(args.record, "conns.txt"), ip)
                await misbehave(opts, r, w)
            servers.append(await asyncio.start_server(cb, ip, args.port))
            continue
        kw = dict(data_size_limit=int(opts.get("size", 33554432)),
                  enable_SMTPUTF8="utf8" in opts, hostname="peer.test", decode_data=False)
        if "tls" in opts or "badtls" in opts or "auth" in opts:
            kw["tls_context"] = tls_ctx
        if "auth" in opts:
            kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        handler = Handler(opts, args, rules)
        factory = counted(lambda handler=handler, ip=ip, opts=opts, kw=kw:
                          PeerSMTP(handler, ip, opts, **kw))
        servers.append(await loop.create_server(factory, ip, args.port))
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
