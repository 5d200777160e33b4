#!/usr/bin/python3
"""Delivery from the journal (the hand-off): sluice-smtpd journals a small
message, replies 250 and hands the record to sluice-delivery, which delivers
it to local mailboxes straight from that record and answers "done" (the
message never reaches queue/), or "keep" (it goes through queue/). Checked
here: the plain path never touches queue/; kill -9 of either daemon, a
runner that is down, or one that does not answer in time, never lose a
message nor deliver one twice (every Maildir file carries its delivery key
"Q<queue id>_<recipient index>", so copies are counted per key); a remote
recipient takes the queue/ path."""

import collections
import concurrent.futures
import ctypes
import os
import re
import signal
import struct
import threading
import unittest

import sluicetest as st
from dlvtest import DeliveryCase, Receiver, SENDER, maildir_names

USER = "user@example.test"
BOB = "bob@example.test"
# A delivery key in a Maildir file name (include/sluice/maildir.h):
# "<sec>.M<usec>P<pid>Q<id>_<rcpt index>.<host>[:2,FLAGS]".
KEY_RE = re.compile(r"Q([0-9A-F]{14})_(\d+)\.")


# ---------------------------------------------------------------------------
# inotify: every name that ever shows up in queue/ (stdlib has no binding)

_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_libc = ctypes.CDLL(None, use_errno=True)


class DirWatch:
    """Records every name created in, or moved into, a folder from now on."""

    def __init__(self, case, path):
        self.path = path
        self.names = []
        self.overflow = False
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise unittest.SkipTest(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.fd = fd
        case.addCleanup(os.close, fd)
        if _libc.inotify_add_watch(fd, path.encode(), _IN_CREATE | _IN_MOVED_TO) < 0:
            raise unittest.SkipTest(f"inotify_add_watch {path}: "
                                    f"{os.strerror(ctypes.get_errno())}")

    def poll(self):
        """Reads the events queued so far; returns every name seen."""
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.names
            off = 0
            while off + 16 <= len(buf):
                _, mask, _, n = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + n].rstrip(b"\0").decode("utf-8", "replace")
                off += 16 + n
                if mask & _IN_Q_OVERFLOW:
                    self.overflow = True
                if name:
                    self.names.append(name)

    def ids(self):
        """Queue ids of the messages whose files showed up."""
        return {n.split(".", 1)[0] for n in self.poll()
                if re.fullmatch(r"[0-9A-F]{14}\.(env|msg)", n)}


# ---------------------------------------------------------------------------

def maildir_keys(path):
    """Counter of (queue id, recipient index) over the files of a Maildir."""
    c = collections.Counter()
    for name in maildir_names(path):
        m = KEY_RE.search(name)
        c[(m.group(1), int(m.group(2))) if m else ("?", name)] += 1
    return c


def body(tag, i):
    return f"Subject: {tag} {i}\r\nX-Seq: {tag}-{i}\r\n\r\nmessage {tag} {i}\r\n".encode()


class HandoffCase(DeliveryCase):
    """DeliveryCase with batch sending and settle checks for the hand-off."""

    def sluice_for(self, smtpd_env=None, start_delivery=True):
        """A Sluice with smtpd started (with smtpd_env added to its
        environment, and to no other daemon's) and, by default, the runner."""
        s = self.sluice(start=False)
        s.env.update(smtpd_env or {})
        s.start_smtpd()
        s.env.clear()
        if start_delivery:
            s.start_delivery()
        return s

    def send_many(self, s, n, rcpts, tag, acked=None):
        """Sends n messages over one connection; returns their queue ids.
        acked(), when given, runs after each 250."""
        c = s.connect()
        try:
            c.cmd("EHLO client.test")
            ids = []
            for i in range(n):
                r = c.transaction(SENDER, rcpts, body(tag, i))
                qid = st.queued_id(r)
                if qid is None:
                    raise AssertionError(f"no queue id in {r}")
                ids.append(qid)
                if acked:
                    acked()
            c.cmd("QUIT")
        finally:
            c.close()
        return ids

    def journal_settled(self, s):
        """The journal's mark has passed every record written."""
        journal = os.path.join(s.spool, "journal")
        last = st.journal_last_seq(journal)
        mark = st.journal_mark(journal)
        return last is not None and mark is not None and mark >= last

    def queue_files(self, s):
        return s.spool_files("queue")

    def wait_settled(self, s, timeout=st.TIMEOUT):
        """Waits until the journal's mark has passed every record and
        queue/ holds no file; fails with the logs otherwise."""
        ok = st.wait_until(lambda: self.journal_settled(s) and not self.queue_files(s),
                           timeout, 0.01)
        if not ok:
            journal = os.path.join(s.spool, "journal")
            self.fail_with_log(
                f"not settled within {timeout}s: queue/ {self.queue_files(s)[:20]} "
                f"({len(self.queue_files(s))} files), journal mark "
                f"{st.journal_mark(journal)}, last record {st.journal_last_seq(journal)}")

    def wait_maildir(self, path, n, timeout=st.TIMEOUT):
        if not st.wait_until(lambda: len(maildir_names(path)) >= n, timeout, 0.005):
            self.fail_with_log(f"{path}: {len(maildir_names(path))} messages, expected {n}")

    def assertEachOnce(self, s, addr, ids, index=0):
        """The Maildir of addr holds exactly one copy of each id (delivery
        key id_index) and nothing else."""
        keys = maildir_keys(s.maildir(addr))
        dups = {k: n for k, n in keys.items() if n > 1}
        want = {(i, index) for i in ids}
        missing = sorted(want - set(keys))
        extra = sorted(set(keys) - want)
        if dups or missing or extra:
            self.fail_with_log(
                f"{addr}: {sum(keys.values())} files for {len(ids)} messages; "
                f"duplicated keys {dups}, missing {missing[:10]} ({len(missing)}), "
                f"unexpected {extra[:10]} ({len(extra)})")

    def assertSentFromLog(self, s, qid, addr, text="delivered to maildir"):
        log = s.log("sluice-delivery")
        self.assertRegex(log, rf"{qid}: to=<{re.escape(addr)}>, relay=local, .*status=sent "
                              rf"\(250 2\.0\.0 {re.escape(text)}")
        self.assertRegex(log, rf"{qid}: removed")


class Handoff(HandoffCase):
    def test_delivered_from_handoff_never_in_queue(self):
        """The plain path: each message is delivered from its record and
        forgotten; no file of it ever appears in queue/."""
        n = 20
        # A long wait for the answers: on a machine loaded by the sanitizer
        # build's tests, a slow "done" must not turn into a file in queue/.
        s = self.sluice_for({"SLUICE_SPOOL_HANDOFF_MS": "30000"})
        watch = DirWatch(self, os.path.join(s.spool, "queue"))
        ids = self.send_many(s, n, USER, "plain")
        self.assertEqual(len(set(ids)), n)
        self.wait_maildir(s.maildir(USER), n)
        for qid in ids:
            self.wait_log(s, rf"{qid}: removed")
        self.wait_settled(s)
        for qid in ids:
            self.assertSentFromLog(s, qid, USER)
        self.assertFalse(watch.overflow, "inotify queue overflowed")
        self.assertEqual(sorted(watch.poll()), [],
                         "files appeared in queue/: the hand-off was not used for them")
        self.assertEqual(self.queue_files(s), [])
        self.assertNotIn("restored", s.log())
        self.assertNotIn("already in the mailbox", s.log("sluice-delivery"))
        self.assertEqual(len(maildir_names(s.maildir(USER))), n)
        self.assertEachOnce(s, USER, ids)

    def test_kill9_smtpd_after_handoff_delivery_no_duplicate(self):
        """kill -9 of sluice-smtpd after the runner delivered its hand-offs
        but before the journal's mark passed them: the restart writes them
        back into queue/ and announces them "late"; the runner finds each by
        its delivery key and delivers none twice."""
        n = 10
        s = self.sluice_for(smtpd_env={"SLUICE_SPOOL_CKPT_MS": "600000"})
        path = s.maildir(USER)
        # The checkpointer's first round may come at once (its pacing starts
        # from the monotonic clock's zero); this message takes it, so that
        # the next round is 600 s away and the mark stays below the batch.
        warm = self.send_many(s, 1, USER, "warm-up")
        self.wait_maildir(path, 1)
        self.wait_log(s, rf"{warm[0]}: removed")
        journal = os.path.join(s.spool, "journal")
        mark_before = st.journal_mark(journal)
        ids = self.send_many(s, n, USER, "kill-smtpd")
        self.wait_maildir(path, n + 1)
        for qid in ids:
            self.wait_log(s, rf"{qid}: removed")
            self.assertSentFromLog(s, qid, USER)
        self.assertEqual(self.queue_files(s), [], "delivered from the hand-off, not queue/")
        self.assertEqual(st.journal_mark(journal), mark_before,
                         "the mark moved: the batch is not above it any more (test premise)")
        self.assertGreater(st.journal_last_seq(journal), mark_before or 0)
        s.kill9("sluice-smtpd")
        s.start_smtpd()  # without SLUICE_SPOOL_CKPT_MS
        self.wait_settled(s)
        log = s.log()
        m = re.search(r"spool: journal: (\d+) messages? written back into queue/, (\d+) found there",
                      log)
        self.assertIsNotNone(m, "smtpd did not write the journal's records back\n" + log[-3000:])
        self.assertGreaterEqual(int(m.group(1)) + int(m.group(2)), n, m.group(0))
        for qid in ids:
            self.assertIn(f"{qid}: restored from the journal into queue/", log)
            self.wait_log(s, rf"{qid}: to=<{re.escape(USER)}>, relay=local, .*status=sent "
                             rf"\(250 2\.0\.0 already in the mailbox")
        s.stop("sluice-delivery")  # nothing in flight is left to land later
        self.assertEqual(len(maildir_names(path)), n + 1)
        self.assertEachOnce(s, USER, ids + warm)
        self.assertEqual(self.queue_files(s), [])

    def test_runner_down_checkpointer_writes_queue_then_one_delivery(self):
        """No runner: the hand-off cannot go, the checkpointer writes each
        message into queue/; the runner started later delivers each once."""
        n = 10
        s = self.sluice_for(start_delivery=False)
        ids = self.send_many(s, n, USER, "no-runner")
        want = sorted(x + ext for x in ids for ext in (".env", ".msg"))
        if not st.wait_until(lambda: sorted(self.queue_files(s)) == want, st.TIMEOUT, 0.01):
            self.fail_with_log(f"queue/ holds {self.queue_files(s)}, expected {want}")
        self.assertEqual(maildir_names(s.maildir(USER)), [])
        s.start_delivery()
        self.wait_maildir(s.maildir(USER), n)
        self.wait_settled(s)
        for qid in ids:
            self.assertSentFromLog(s, qid, USER)
        s.stop("sluice-delivery")
        self.assertEqual(len(maildir_names(s.maildir(USER))), n)
        self.assertEachOnce(s, USER, ids)

    def test_no_answer_in_time_stopped_runner(self):
        """The runner takes the records (they wait in its socket) but is
        stopped (SIGSTOP) past SLUICE_SPOOL_HANDOFF_MS: the checkpointer
        writes them into queue/ and announces them "late". After SIGCONT the
        runner has each message twice (the record, and queue/), and
        delivers each once."""
        n = 8  # the runner's socket queues 10 datagrams (net.unix.max_dgram_qlen)
        s = self.sluice_for(smtpd_env={"SLUICE_SPOOL_HANDOFF_MS": "300"})
        runner = s.daemons["sluice-delivery"]
        watch = DirWatch(self, os.path.join(s.spool, "queue"))
        os.kill(runner.pid, signal.SIGSTOP)
        try:
            ids = self.send_many(s, n, USER, "stopped")
            if not st.wait_until(lambda: set(ids) <= watch.ids(), st.TIMEOUT, 0.01):
                self.fail_with_log(f"not written into queue/: {sorted(set(ids) - watch.ids())}")
        finally:
            os.kill(runner.pid, signal.SIGCONT)
        self.wait_maildir(s.maildir(USER), n)
        self.wait_settled(s)
        s.stop("sluice-delivery")  # in-flight attempts end; held records are not delivered
        log = s.log("sluice-delivery")
        # Written from its record first, then its queue/ copy found by key.
        both = [q for q in ids
                if re.search(rf"{q}: to=[^\n]*delivered to maildir\)\n(.*\n)*"
                             rf".*{q}: to=[^\n]*already in the mailbox", log)]
        print(f"\n{n} messages: {len(both)} delivered from the hand-off record, then "
              f"their queue/ copy found by its delivery key")
        self.assertTrue(both, "test premise: no message was delivered from its hand-off "
                              "record (were the records handed to the stopped runner?)")
        for qid in ids:
            self.assertRegex(log, rf"{qid}: to=<{re.escape(USER)}>, relay=local, .*status=sent")
        self.assertEqual(len(maildir_names(s.maildir(USER))), n)
        self.assertEachOnce(s, USER, ids)
        self.assertEqual(self.queue_files(s), [])

    def test_remote_recipient_goes_through_queue(self):
        """A local and a remote recipient: the runner answers "keep", the
        message goes through queue/; one copy in the mailbox, one at the
        remote MX, and the spool ends empty."""
        try:
            rcv = Receiver(self)
        except ImportError as e:
            self.skipTest(f"aiosmtpd is not available: {e}")
        s = self.start(mx={"remote.test": rcv}, smtpd={"trusted_networks": "127.0.0.0/8"})
        watch = DirWatch(self, os.path.join(s.spool, "queue"))
        ids = self.send_many(s, 1, [USER, "far@remote.test"], "mixed")
        qid = ids[0]
        self.wait_maildir(s.maildir(USER), 1)
        if not st.wait_until(lambda: len(rcv.messages) >= 1, st.TIMEOUT, 0.01):
            self.fail_with_log("the remote MX got nothing")
        self.wait_log(s, rf"{qid}: removed")
        self.wait_settled(s)
        s.stop("sluice-delivery")
        self.assertIn(qid, watch.ids(), "the message never went through queue/")
        self.assertEqual(len(rcv.messages), 1)
        self.assertEqual(rcv.messages[0][1], ["far@remote.test"])
        self.assertIn(b"X-Seq: mixed-0", rcv.messages[0][2])
        self.assertEqual(len(maildir_names(s.maildir(USER))), 1)
        self.assertEachOnce(s, USER, ids)
        log = s.log("sluice-delivery")
        self.assertRegex(log, rf"{qid}: to=<far@remote\.test>, .*status=sent")
        self.assertRegex(log, rf"{qid}: to=<{re.escape(USER)}>, relay=local, .*status=sent")
        self.assertEqual(maildir_names(s.maildir(SENDER)), [], "no DSN")
        self.assertEqual(self.queue_files(s), [])

    def test_kill9_runner_mid_burst(self):
        """kill -9 of sluice-delivery while a burst is being delivered from
        its hand-offs; after a restart every message is in the Maildir once."""
        conns, per_conn = 3, 100
        total = conns * per_conn
        s = self.sluice_for()
        path = s.maildir(USER)
        acked = collections.Counter()
        lock = threading.Lock()

        def count():
            with lock:
                acked["n"] += 1

        def sender(k):
            return self.send_many(s, per_conn, USER, f"burst{k}", count)

        with concurrent.futures.ThreadPoolExecutor(conns) as pool:
            futures = [pool.submit(sender, k) for k in range(conns)]
            # Kill once some are in the Maildir, while the burst goes on.
            st.wait_until(lambda: len(maildir_names(path)) >= 60
                          or all(f.done() for f in futures), 60, 0.001)
            in_maildir = len(maildir_names(path))
            with lock:
                acked_at_kill = acked["n"]
            s.kill9("sluice-delivery")
            ids = [i for f in futures for i in f.result()]
        print(f"\nkill -9 of the runner with {in_maildir} of {total} in the Maildir, "
              f"{acked_at_kill} acknowledged")
        self.assertGreater(in_maildir, 0, "test premise: some delivered before the kill")
        self.assertLess(in_maildir, total, "test premise: the kill came before the end")
        self.assertEqual(len(set(ids)), total)
        s.start_delivery()
        self.wait_maildir(path, total, timeout=60)
        self.wait_settled(s, timeout=60)
        s.stop("sluice-delivery")
        found = s.log("sluice-delivery").count("already in the mailbox")
        print(f"after the restart: {len(maildir_names(path))} files, {found} copies found "
              f"by their delivery key")
        self.assertEqual(len(maildir_names(path)), total)
        self.assertEachOnce(s, USER, ids)
        self.assertEqual(self.queue_files(s), [])


if __name__ == "__main__":
    st.main()
