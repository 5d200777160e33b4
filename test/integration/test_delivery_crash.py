#!/usr/bin/python3
"""sluice-delivery and crashes: kill -9 in the middle of a batch of 100
messages; after a restart every message is delivered to every recipient, none
lost, and duplicates are counted (goal: 0, thanks to the delivery keys).
Also SIGTERM with a delivery in flight: it finishes, then a clean exit 0."""

import asyncio
import collections
import re
import time

import sluicetest as st
from dlvtest import DeliveryCase, Receiver, SENDER, maildir_files, notify

N = 100
RCPTS = ("user@example.test", "bob@example.test")


class Kill9(DeliveryCase):
    def count(self, s):
        """{addr: Counter(msg number -> copies)}"""
        out = {}
        for addr in RCPTS:
            c = collections.Counter()
            for data in maildir_files(s.maildir(addr)):
                m = re.search(rb"X-Batch: (\d+)\n", data)
                self.assertIsNotNone(m, data[:300])
                c[int(m.group(1))] += 1
            out[addr] = c
        return out

    def delivered(self, s):
        return sum(len(c) for c in self.count(s).values())

    def test_kill9_mid_batch(self):
        s = self.start(start_delivery=False)
        c = s.smtplib()
        c.ehlo("client.test")
        for i in range(N):
            c.sendmail(SENDER, list(RCPTS),
                       f"Subject: batch {i}\r\nX-Batch: {i}\r\n\r\nmessage {i}\r\n".encode())
        c.quit()
        self.assertEqual(len(s.spool_ids()), N)

        kills = []
        for round_ in range(3):
            s.start_delivery()
            # Kill while the batch is being worked on: some delivered, not all.
            target = (round_ + 1) * N // 2
            st.wait_until(lambda: self.delivered(s) >= target, 20, 0.001)
            s.kill9("sluice-delivery")
            kills.append(self.delivered(s))
            if not s.spool_ids():
                break
        print(f"\nkill -9 after {kills} of {N * len(RCPTS)} deliveries; "
              f"{len(s.spool_ids())} messages left in the queue")

        s.start_delivery()
        self.wait_spool_empty(s, timeout=60)
        counts = self.count(s)
        lost = dups = 0
        for addr, c in counts.items():
            lost += sum(1 for i in range(N) if c[i] == 0)
            dups += sum(n - 1 for n in c.values() if n > 1)
        found = s.log("sluice-delivery").count("already in the mailbox")
        print(f"after restart: {sum(len(c) for c in counts.values())} of {N * len(RCPTS)} "
              f"delivered, lost {lost}, duplicates {dups} ({found} earlier copies found "
              f"by their delivery key)")
        self.assertEqual(lost, 0)
        self.assertEqual(dups, 0)
        self.assertEqual(s.spool_files("corrupt"), [])
        # No DSN: nothing failed.
        self.assertEqual(maildir_files(s.maildir(SENDER)), [])


class Corrupt(DeliveryCase):
    def test_corrupt_envelope_quarantined(self):
        s = self.start()
        bad = "0123456789ABC0"
        with open(s.spool_path("queue", bad + ".msg"), "wb") as f:
            f.write(b"Subject: x\r\n\r\nx\r\n")
        with open(s.spool_path("queue", bad + ".env"), "wb") as f:
            f.write(b"sluice-envelope 1\nid: " + bad.encode() + b"\ngarbage\n")
        notify(s, f"flush {bad}")
        # Whoever reads it first (the start scan, or the attempt the flush
        # asks for) quarantines it, and the spool layer says so either way.
        self.wait_log(s, rf"{bad}: moved to corrupt/: envelope: line 3")
        self.assertNotIn(bad + ".env", s.spool_files("queue"))
        self.assertIn(bad + ".env", s.spool_files("corrupt"))
        # And the runner goes on.
        self.send(s, "user@example.test", b"Subject: after\r\n\r\nstill working\r\n")
        self.wait_spool_empty(s)
        self.assertEqual(len(maildir_files(s.maildir("user@example.test"))), 1)


class Stop(DeliveryCase):
    def test_sigterm_waits_for_delivery_in_flight(self):
        rcv = Receiver(self)
        handler = rcv.controller.handler
        accept = handler.handle_DATA

        async def slow(server, session, envelope):
            await asyncio.sleep(2)
            return await accept(server, session, envelope)

        handler.handle_DATA = slow
        s = self.start(mx={"remote.test": rcv}, smtpd={"trusted_networks": "127.0.0.0/8"})
        qid = self.send(s, "far@remote.test", b"Subject: slow\r\n\r\nslow peer\r\n")
        self.wait_log(s, "started")
        time.sleep(0.5)  # the transaction is waiting for the reply to the data
        s.stop("sluice-delivery")  # exit 0, no sanitizer report
        self.assertEqual(len(rcv.messages), 1)
        log = s.log("sluice-delivery")
        self.assertIn("stop: waiting for 1 attempt in flight", log)
        self.assertRegex(log, rf"{qid}: to=<far@remote\.test>, .*status=sent")
        self.assertEqual(s.spool_ids(), [])


if __name__ == "__main__":
    st.main()
