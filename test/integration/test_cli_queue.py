#!/usr/bin/python3
"""`sluice queue`: list (text and JSON contract), filters, show, stats,
delete, hold/release, requeue and flush, against a real spool filled by a
running sluice-smtpd, with sluice-delivery stopped and running: a held
message is not delivered until released, a deleted one never, a deferred
one is delivered by `queue flush` once its MX (aiosmtpd on loopback) is up,
and a message locked by a delivery attempt is not changed behind it."""

import fcntl
import json
import os
import re
import subprocess
import threading
import time

import sluicetest as st
from sluicetest import SluiceCase

SLUICE = os.path.join(st.BIN, "sluice")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
BODY = b"Subject: cli test\r\nFrom: alice@example.test\r\n\r\nhello\r\n"


def run_cli(case, s, *args, input=None, env=None):
    """Runs `sluice -c CONF ARGS...`; returns the CompletedProcess (text).
    Fails the test on a sanitizer report."""
    p = subprocess.run([SLUICE, "-c", s.conf_path, *args], input=input,
                       capture_output=True, text=True, timeout=st.TIMEOUT * 4, env=env)
    for marker in st.SANITIZER_MARKERS:
        if marker in p.stderr:
            case.fail(f"sluice {' '.join(args)}: sanitizer report:\n{p.stderr}")
    return p


class Receiver:
    """aiosmtpd on 127.0.0.1:port in a thread, started on demand (an MX
    that comes up later). Accepted messages: (mail_from, rcpt_tos, data)."""

    def __init__(self, case, port):
        self.case = case
        self.port = port
        self.messages = []
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       envelope.original_content or envelope.content))
                return "250 2.0.0 accepted"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     decode_data=False)
        self.controller.start()
        self.case.addCleanup(self.stop)

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class QueueCase(SluiceCase):
    """A Sluice whose mx listener relays for loopback (so remote recipients
    can be queued over SMTP) and whose remote.test MX is 127.0.0.1 on a
    port nothing listens on until a test starts a Receiver there."""

    def setUp(self):
        super().setUp()
        s = self.sluice(start=False)
        self.mx_port = st.free_port()
        s.dns.mx("remote.test", "mx.remote.test")
        s.dns.a("mx.remote.test", "127.0.0.1")
        s.write_config(smtpd={"trusted_networks": "127.0.0.0/8"},
                       delivery={"remote_port": self.mx_port})
        s.start_smtpd()
        self.s = s

    def cli(self, *args, ok=True, **kw):
        p = run_cli(self, self.s, *args, **kw)
        if ok and p.returncode != 0:
            self.fail_with_log(f"sluice {' '.join(args)} exited {p.returncode}:\n"
                               f"{p.stdout}\n{p.stderr}")
        return p

    def send(self, rcpts, sender="alice@example.test", body=BODY):
        with self.s.connect() as c:
            c.ehlo()
            qid = self.assertQueued(c.transaction(sender, rcpts, body))
            c.cmd("QUIT")
        return qid

    def list_json(self, *args):
        p = self.cli("queue", "list", "--json", *args)
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            self.fail(f"queue list --json is not JSON ({e}):\n{p.stdout[:2000]}")

    def wait_state(self, qid, addr, state):
        def ok():
            try:
                env = self.s.envelope(qid)
            except FileNotFoundError:
                return False
            return any(r["rcpt"] == addr and r.get("rcpt-state") == state for r in env.rcpts)
        if not st.wait_until(ok, st.TIMEOUT, 0.05):
            self.fail_with_log(f"{qid}: <{addr}> never became {state}")

    def deferred_message(self, rcpt="bob@remote.test"):
        """A message whose remote recipient has been tried once and
        deferred (the MX port refuses connections). Needs sluice-delivery."""
        qid = self.send(rcpt)
        self.wait_state(qid, rcpt, "deferred")
        return qid


class ListAndShow(QueueCase):
    def test_list_json_contract(self):
        a = self.send(["user@example.test", "bob@remote.test"])
        b = self.send("carol@remote.test", sender="")
        c = self.send("bob@example.test", sender="dave@other.test")
        data = self.list_json()
        self.assertIsInstance(data, list)
        self.assertEqual([m["id"] for m in data], [a, b, c], "sorted by arrival")
        for m in data:
            for key, typ in (("id", str), ("size", int), ("arrival", str), ("sender", str),
                             ("hold", bool), ("recipients", list)):
                self.assertIn(key, m, m)
                self.assertIsInstance(m[key], typ, f"{key}: {m}")
            self.assertRegex(m["arrival"], RFC3339)
            self.assertEqual(m["size"], len(self.s.message(m["id"])))
            self.assertFalse(m["hold"])
            for r in m["recipients"]:
                for key in ("address", "state", "attempts", "last_reply"):
                    self.assertIn(key, r, r)
                self.assertIsInstance(r["address"], str)
                self.assertIn(r["state"], ("pending", "deferred", "delivered", "failed"))
                self.assertIsInstance(r["attempts"], int)
                self.assertIsInstance(r["last_reply"], (str, type(None)))
        self.assertEqual(data[0]["sender"], "alice@example.test")
        self.assertEqual([r["address"] for r in data[0]["recipients"]],
                         ["user@example.test", "bob@remote.test"])
        self.assertEqual(data[0]["recipients"][0]["state"], "pending")
        self.assertEqual(data[0]["recipients"][0]["attempts"], 0)
        self.assertEqual(data[1]["sender"], "", "the null sender")
        # Arrival agrees with the envelope file.
        self.assertEqual(data[0]["arrival"], self.s.envelope(a).get("arrival"))

    def test_list_text(self):
        a = self.send(["user@example.test", "bob@remote.test"])
        out = self.cli("queue", "list").stdout
        self.assertIn(a, out)
        self.assertIn("<alice@example.test>", out)
        self.assertRegex(out, r"pending\s+0\s+<user@example.test>")
        self.assertRegex(out, r"pending\s+0\s+<bob@remote.test>")
        self.assertRegex(out, r"-- \d+ KiB in 1 message\.")
        self.cli("queue", "hold", a)
        self.assertIn(a + "!", self.cli("queue", "list").stdout, "held: marked with !")

    def test_empty_queue(self):
        self.assertIn("Mail queue is empty", self.cli("queue", "list").stdout)
        self.assertEqual(json.loads(self.cli("queue", "list", "--json").stdout), [])
        self.assertEqual(json.loads(self.cli("queue", "stats", "--json").stdout)["messages"], 0)

    def test_filters(self):
        a = self.send("user@example.test", sender="alice@example.test")
        b = self.send("bob@remote.test", sender="news@lists.other.test")
        c = self.send(["alice@example.test", "x@sub.remote.test"], sender="")
        self.cli("queue", "hold", c)

        def ids(*args):
            return [m["id"] for m in self.list_json(*args)]
        self.assertEqual(ids("--sender", "alice@example.test"), [a])
        self.assertEqual(ids("--sender", "ALICE@EXAMPLE.TEST"), [a])
        self.assertEqual(ids("--sender", "other.test"), [b], "domain and subdomains")
        self.assertEqual(ids("--sender", "@lists.other.test"), [b])
        self.assertEqual(ids("--sender", "<>"), [c])
        self.assertEqual(ids("--rcpt", "remote.test"), [b, c])
        self.assertEqual(ids("--rcpt", "alice@example.test"), [c])
        self.assertEqual(ids("--state", "hold"), [c])
        self.assertEqual(ids("--state", "pending"), [a, b])
        self.assertEqual(ids("--state", "deferred"), [])
        self.assertEqual(ids("--older-than", "0s"), [a, b, c])
        self.assertEqual(ids("--older-than", "1h"), [])
        self.assertEqual(ids("--rcpt", "remote.test", "--state", "pending"), [b], "filters AND")
        text = self.cli("queue", "list", "--sender", "nobody@nowhere.test").stdout
        self.assertIn("No matching messages", text)
        for bad in (["--state", "frozen"], ["--older-than", "soon"], ["--sender"], ["--bogus"]):
            p = self.cli("queue", "list", *bad, ok=False)
            self.assertEqual(p.returncode, 64, f"{bad}: {p.stderr}")
            self.assertIn("sluice", p.stderr)

    def test_show(self):
        qid = self.send(["user@example.test", "bob@remote.test"],
                        body=b"Subject: show me\r\nX-Test: 1\r\n\r\nsecret body\r\n")
        out = self.cli("queue", "show", qid).stdout
        for want in (f"id: {qid}", "sender: alice@example.test", "client-addr: 127.0.0.1",
                     "rcpt: user@example.test", "rcpt: bob@remote.test", "rcpt-state: pending",
                     "rcpt-attempts: 0", "hold: no", "Subject: show me", "X-Test: 1",
                     "Received: from client.test"):
            self.assertIn(want, out)
        self.assertNotIn("secret body", out, "headers only without --body")
        body = subprocess.run([SLUICE, "-c", self.s.conf_path, "queue", "show", qid, "--body"],
                              capture_output=True, timeout=st.TIMEOUT).stdout
        self.assertEqual(body, self.s.message(qid), "--body: the message byte for byte")
        j = json.loads(self.cli("queue", "show", qid, "--json").stdout)
        self.assertEqual(j["id"], qid)
        self.assertIn("Subject: show me", j["headers"])
        self.assertEqual(len(j["recipients"]), 2)
        # Lower case ids are accepted too.
        self.assertIn(f"id: {qid}", self.cli("queue", "show", qid.lower()).stdout)

    def test_unknown_ids(self):
        qid = self.send("user@example.test")
        gone = qid[:-1] + ("0" if qid[-1] != "0" else "1")
        for cmd in ("show", "delete", "hold", "release", "requeue", "flush"):
            for bad in (gone, "NOT-AN-ID"):
                p = self.cli("queue", cmd, bad, ok=False)
                self.assertEqual(p.returncode, 1, f"{cmd} {bad}: {p.stdout} {p.stderr}")
                self.assertIn(f"sluice: no such message: {bad}", p.stderr, cmd)
        self.assertEqual(self.s.spool_ids(), [qid], "nothing else touched")

    def test_help_and_usage(self):
        for cmd in (["--help"], ["queue", "--help"], ["check", "--help"], ["sendmail", "--help"]):
            p = self.cli(*cmd)
            self.assertIn("usage:", p.stdout, cmd)
        for sub in ("list", "show", "stats", "delete", "hold", "release", "requeue", "flush"):
            p = self.cli("queue", sub, "--help")
            self.assertIn(f"usage: sluice queue {sub}", p.stdout)
        for bad in (["queue"], ["queue", "frobnicate"], ["frobnicate"], ["queue", "delete"],
                    ["queue", "show"], ["queue", "hold", "--all", "X"]):
            p = self.cli(*bad, ok=False)
            self.assertEqual(p.returncode, 64, f"{bad}: {p.stderr}")
            self.assertIn("usage", p.stderr, bad)

    def test_unreadable_spool(self):
        self.s.write_config(server={"spool": "no/such/spool"})
        p = self.cli("queue", "list", ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"sluice: cannot open the spool /\S+/no/such/spool: "
                                   r"No such file or directory")
        p = subprocess.run([SLUICE, "-c", "/nonexistent/sluice.conf", "queue", "list"],
                           capture_output=True, text=True, timeout=st.TIMEOUT)
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("/nonexistent/sluice.conf", p.stderr)

    def test_stats(self):
        self.send(["user@example.test", "bob@remote.test"])
        self.send(["x@remote.test", "y@Remote.Test", "z@other.test"])
        held = self.send("user@example.test")
        self.cli("queue", "hold", held)
        j = json.loads(self.cli("queue", "stats", "--json").stdout)
        self.assertEqual(j["messages"], 3)
        self.assertEqual(j["by_state"], {"pending": 2, "deferred": 0, "hold": 1, "done": 0})
        self.assertEqual(j["recipients"]["pending"], 6)
        self.assertEqual(j["bytes"], sum(len(self.s.message(i)) for i in self.s.spool_ids()))
        doms = {d["domain"]: d["pending"] for d in j["domains"]}
        self.assertEqual(doms, {"remote.test": 3, "example.test": 2, "other.test": 1})
        self.assertEqual(j["domains"][0]["domain"], "remote.test", "most first")
        self.assertEqual(j["oldest"]["id"], self.s.spool_ids()[0])
        self.assertRegex(j["oldest"]["arrival"], RFC3339)
        text = self.cli("queue", "stats").stdout
        self.assertIn("messages:   3", text)
        self.assertRegex(text, r"\n\s+3\s+0\s+remote.test\n")


class ChangeWithoutDelivery(QueueCase):
    """sluice-delivery stopped: the changes are on disk, and flush says so."""

    def test_hold_release(self):
        qid = self.send("user@example.test")
        p = self.cli("queue", "hold", qid)
        self.assertIn(f"{qid}: on hold", p.stdout)
        self.assertEqual(self.s.envelope(qid).get("hold"), "yes")
        self.assertTrue(self.s.envelope(qid).crc_ok)
        self.assertIn("already on hold", self.cli("queue", "hold", qid).stdout)
        p = self.cli("queue", "release", qid)
        self.assertIn(f"{qid}: released", p.stdout)
        self.assertIn("sluice-delivery is not running; the messages will be delivered when it "
                      "starts", p.stderr)
        self.assertEqual(self.s.envelope(qid).get("hold"), "no")
        self.assertIn("not on hold", self.cli("queue", "release", qid).stdout)

    def test_delete(self):
        a = self.send("user@example.test")
        b = self.send("user@example.test")
        self.assertIn(f"{a}: deleted", self.cli("queue", "delete", a).stdout)
        self.assertEqual(self.s.spool_ids(), [b])
        self.assertNotIn(a + ".msg", self.s.spool_files("queue"))
        p = self.cli("queue", "delete", a, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"no such message: {a}", p.stderr)
        # Several at once; one unknown id fails the command, the others are done.
        c = self.send("user@example.test")
        p = self.cli("queue", "delete", b, "00000000000000", c, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.s.spool_ids(), [])

    def test_delete_all_and_from_stdin(self):
        ids = [self.send("user@example.test") for _ in range(3)]
        self.cli("queue", "delete", "-", input=f"{ids[0]}\n{ids[1]}!\n")
        self.assertEqual(self.s.spool_ids(), [ids[2]])
        more = [self.send("user@example.test") for _ in range(2)]
        p = self.cli("queue", "delete", "--all")
        self.assertIn("3 messages deleted", p.stdout)
        self.assertEqual(self.s.spool_ids(), [])
        self.assertTrue(more)

    def test_flush_without_runner(self):
        qid = self.send("bob@remote.test")
        for args in (["queue", "flush"], ["queue", "flush", qid]):
            p = self.cli(*args)
            self.assertEqual(p.returncode, 0)
            self.assertIn("sluice-delivery is not running; the messages will be delivered when "
                          "it starts", p.stderr)

    def test_lock_held_by_an_attempt(self):
        """A delivery attempt holds flock() on queue/ID.msg for its whole
        length: delete waits (--wait) and then refuses; it never removes a
        message behind the runner's back."""
        qid = self.send("user@example.test")
        fd = os.open(self.s.spool_path("queue", qid + ".msg"), os.O_RDONLY)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        p = self.cli("queue", "delete", "--wait", "1", qid, ok=False)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9, "it waited")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"sluice: {qid} is being delivered right now; try again", p.stderr)
        self.assertEqual(self.s.spool_ids(), [qid])
        for cmd in ("hold", "requeue"):
            p = self.cli("queue", cmd, "--wait", "0", qid, ok=False)
            self.assertEqual(p.returncode, 1, cmd)
            self.assertIn("being delivered right now", p.stderr)
        p = self.cli("queue", "flush", qid)  # flush: being attempted is fine
        self.assertIn("being delivered right now", p.stdout)
        # The attempt ends within the default wait: delete then goes ahead.
        threading.Timer(0.5, fcntl.flock, (fd, fcntl.LOCK_UN)).start()
        self.cli("queue", "delete", qid)
        self.assertEqual(self.s.spool_ids(), [])


class WithDelivery(QueueCase):
    """sluice-delivery running."""

    def test_held_message_is_not_delivered_until_released(self):
        qid = self.send("user@example.test")
        self.cli("queue", "hold", qid)
        self.s.start_delivery()
        time.sleep(2)  # the runner's first scan has long passed
        self.assertEqual(self.s.maildir_messages("user@example.test"), [], "held: not delivered")
        self.assertEqual(self.s.spool_ids(), [qid])
        p = self.cli("queue", "release", qid)
        self.assertNotIn("not running", p.stderr)
        self.assertTrue(st.wait_until(lambda: self.s.maildir_messages("user@example.test")),
                        "delivered after release")
        self.assertTrue(st.wait_until(lambda: not self.s.spool_ids()))

    def test_deleted_message_is_never_delivered(self):
        qid = self.send("user@example.test")
        self.cli("queue", "delete", qid)
        self.s.start_delivery()
        # A deferred remote message deleted while the runner knows it.
        rid = self.deferred_message()
        self.cli("queue", "delete", rid)
        rcv = Receiver(self, self.mx_port)
        rcv.start()
        self.cli("queue", "flush")
        other = self.send("bob@example.test")  # the runner is alive and delivering
        self.assertTrue(st.wait_until(lambda: self.s.maildir_messages("bob@example.test")))
        time.sleep(1)
        self.assertEqual(self.s.maildir_messages("user@example.test"), [])
        self.assertEqual(rcv.messages, [], "a deleted message reached the MX")
        self.assertNotIn(other, self.s.spool_ids())
        self.assertNotIn(f"{qid}: to=", self.s.log("sluice-delivery"))

    def test_flush_after_mx_comes_up(self):
        self.s.start_delivery()
        a = self.deferred_message("bob@remote.test")
        b = self.deferred_message("carol@remote.test")
        data = {m["id"]: m for m in self.list_json("--state", "deferred")}
        self.assertEqual(sorted(data), [a, b])
        r = data[a]["recipients"][0]
        self.assertEqual((r["state"], r["attempts"]), ("deferred", 1))
        self.assertIsInstance(r["last_reply"], str)
        self.assertTrue(r["last_reply"], "a deferral says why")
        self.assertRegex(r["next_attempt"], RFC3339)
        self.assertIn("(", self.cli("queue", "list").stdout, "the reason is shown")
        rcv = Receiver(self, self.mx_port)
        rcv.start()
        time.sleep(0.5)
        self.assertEqual(rcv.messages, [], "nothing before the flush: retry is minutes away")
        p = self.cli("queue", "flush", a)
        self.assertIn(f"{a}: due now", p.stdout)
        self.assertTrue(st.wait_until(lambda: len(rcv.messages) == 1), "flushed message delivered")
        self.assertEqual(rcv.messages[0][1], ["bob@remote.test"])
        self.assertTrue(st.wait_until(lambda: a not in self.s.spool_ids()))
        self.assertIn(b, self.s.spool_ids(), "flush ID flushes only that message")
        self.cli("queue", "flush")  # all
        self.assertTrue(st.wait_until(lambda: len(rcv.messages) == 2))
        self.assertTrue(st.wait_until(lambda: not self.s.spool_ids()))

    def test_held_deferred_message_stays_put_on_flush(self):
        self.s.start_delivery()
        qid = self.deferred_message()
        self.cli("queue", "hold", qid)
        rcv = Receiver(self, self.mx_port)
        rcv.start()
        p = self.cli("queue", "flush", qid)
        self.assertIn("on hold", p.stdout)
        self.cli("queue", "flush")
        time.sleep(1.5)
        self.assertEqual(rcv.messages, [])
        self.cli("queue", "release", qid)
        self.cli("queue", "flush", qid)
        self.assertTrue(st.wait_until(lambda: len(rcv.messages) == 1))

    def test_requeue_resets_attempts(self):
        self.s.start_delivery()
        qid = self.deferred_message()
        self.s.stop("sluice-delivery")
        env = self.s.envelope(qid)
        self.assertEqual(env.rcpts[0]["rcpt-attempts"], "1")
        self.assertNotEqual(env.rcpts[0]["rcpt-next-attempt"], "0")
        p = self.cli("queue", "requeue", qid)
        self.assertIn(f"{qid}: requeued", p.stdout)
        self.assertIn("not running", p.stderr)
        env = self.s.envelope(qid)
        self.assertEqual(env.rcpts[0]["rcpt-attempts"], "0")
        self.assertEqual(env.rcpts[0]["rcpt-next-attempt"], "0")
        self.assertTrue(env.crc_ok)
        rcv = Receiver(self, self.mx_port)
        rcv.start()
        self.s.start_delivery()  # due now: delivered at start, no flush needed
        self.assertTrue(st.wait_until(lambda: len(rcv.messages) == 1))

    def test_delete_by_state(self):
        self.s.start_delivery()
        deferred = self.deferred_message()
        self.s.stop("sluice-delivery")
        pending = self.send("user@example.test")
        held = self.send("bob@remote.test")
        self.cli("queue", "hold", held)
        p = self.cli("queue", "delete", "--state", "deferred")
        self.assertIn("1 message deleted", p.stdout)
        self.assertEqual(self.s.spool_ids(), sorted([pending, held]))
        self.assertNotIn(deferred, self.s.spool_ids())
        j = json.loads(self.cli("queue", "stats", "--json").stdout)
        self.assertEqual(j["by_state"]["hold"], 1)
        self.assertEqual(j["by_state"]["pending"], 1)


if __name__ == "__main__":
    st.main()
