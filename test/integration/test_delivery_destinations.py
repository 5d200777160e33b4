#!/usr/bin/python3
"""Each Maildir is a delivery destination of its own (`local:<path>`,
docs/delivery.md): with concurrency_per_destination = 1, a Maildir whose
writes hang holds its own slot and no other mailbox's. The hang is real: the
Maildir lives on a small ext4 image mounted from a loop device and frozen
with fsfreeze(8), so the runner's create in tmp/ blocks in the kernel until
the filesystem is thawed."""

import os
import shutil
import subprocess
import tempfile
import unittest

import sluicetest as st
from dlvtest import DeliveryCase, maildir_names


def _tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


class FrozenMaildir(DeliveryCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root: mounts a loop device and freezes it")
        self.tools = {t: _tool(t) for t in ("mkfs.ext4", "fsfreeze", "mount", "umount")}
        missing = [t for t, p in self.tools.items() if p is None]
        if missing:
            self.skipTest(f"missing {', '.join(missing)}")
        self.area = tempfile.mkdtemp(prefix="sluice-frozen-")
        self.addCleanup(shutil.rmtree, self.area, True)
        image = os.path.join(self.area, "maildirs.img")
        with open(image, "wb") as f:
            f.truncate(32 << 20)
        r = _run(self.tools["mkfs.ext4"], "-q", "-F", image)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.mnt = os.path.join(self.area, "mnt")
        os.mkdir(self.mnt)
        r = _run(self.tools["mount"], "-o", "loop", image, self.mnt)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a loop device here: {r.stderr.strip()}")
        # Lazy: sluice-delivery keeps a descriptor on every Maildir
        # filesystem it syncs; the mount goes once it has exited.
        self.addCleanup(_run, self.tools["umount"], "-l", self.mnt)
        self.frozen = False

    def freeze(self):
        r = _run(self.tools["fsfreeze"], "-f", self.mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.frozen = True
        self.addCleanup(self.thaw)  # before anything else waits on the mount

    def thaw(self):
        if self.frozen:
            r = _run(self.tools["fsfreeze"], "-u", self.mnt)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.frozen = False

    def blocked_threads(self, pid):
        """Threads of pid in uninterruptible sleep (D): where a write to a
        frozen filesystem waits."""
        n = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, IndexError):
                continue
            n += state == "D"
        return n

    def test_a_hung_maildir_holds_only_its_own_slot(self):
        slow = os.path.join(self.mnt, "slow")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(slow, sub))
        s = self.start(delivery={"concurrency_per_destination": 1},
                       mailboxes={"slow@example.test": slow})
        runner = s.daemons["sluice-delivery"].pid
        self.freeze()

        first = self.send(s, "slow@example.test", b"Subject: one\r\n\r\nto the frozen Maildir\r\n")
        # The runner has taken the slow Maildir's one slot and sits in the
        # kernel, in its create in tmp/.
        if not st.wait_until(lambda: self.blocked_threads(runner) >= 1, st.TIMEOUT, 0.01):
            self.fail_with_log("sluice-delivery never blocked on the frozen Maildir")
        second = self.send(s, "slow@example.test", b"Subject: two\r\n\r\nwaits for the slot\r\n")
        other = self.send(s, "bob@example.test", b"Subject: three\r\n\r\nanother mailbox\r\n")

        # A destination shared by all Maildirs would keep this one behind
        # the hung write for as long as the freeze lasts.
        self.wait_files(s.maildir("bob@example.test"), 1)
        self.wait_log(s, rf"{other}: removed")
        self.assertEqual(maildir_names(slow), [], "a write got through the freeze")
        ids = s.spool_ids()
        self.assertIn(first, ids)
        self.assertIn(second, ids)

        self.thaw()
        self.wait_files(slow, 2)
        self.wait_spool_empty(s)
        log = s.log("sluice-delivery")
        for qid in (first, second):
            self.assertRegex(log, rf"{qid}: to=<slow@example\.test>, relay=local, .*status=sent")


if __name__ == "__main__":
    unittest.main()
