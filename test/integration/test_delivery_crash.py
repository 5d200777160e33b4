#!/usr/bin/python3
"""sluice-delivery and crashes: kill -9 in the middle of a batch of 100
messages; after a restart every message is delivered to every recipient, none
lost, and duplicates are counted (goal: 0, thanks to the delivery keys)."""

import collections
import re
import time

import sluicetest as st
from dlvtest import DeliveryCase, SENDER, maildir_files

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


if __name__ == "__main__":
    st.main()
