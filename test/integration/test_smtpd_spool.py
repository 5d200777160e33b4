#!/usr/bin/python3
"""sluice-smtpd and the spool: committed files and their format, crash
safety (kill -9), start-of-day recovery, and a full disk."""

import os
import re
import threading
import zlib

import sluicetest as st
from sluicetest import SluiceCase

BODY = b"Subject: spool\r\nFrom: alice@example.test\r\n\r\nkeep me safe\r\n"


class CommittedFiles(SluiceCase):
    def setUp(self):
        super().setUp()
        self.s = self.sluice()
        self.c = self.connect(self.s)

    def test_files_and_format(self):
        qid = self.assertQueued(self.c.transaction("alice@example.test",
                                                   ["user@example.test", "bob@example.test"], BODY))
        self.s.spool_settle()  # the checkpoint after the journal
        self.assertEqual(sorted(self.s.spool_files("queue")), [qid + ".env", qid + ".msg"])
        self.assertEqual(self.s.spool_files("incoming"), [], "nothing left in incoming/")
        env = self.s.envelope(qid)
        msg = self.s.message(qid)
        self.assertTrue(env.version.startswith("sluice-envelope "), f"version line: {env!r}")
        self.assertTrue(env.complete, f"no end: line: {env!r}")
        self.assertTrue(env.crc_ok, f"end: CRC-32 does not match the bytes before it: {env!r}")
        self.assertEqual(env.duplicates, [], f"duplicate keys: {env!r}")
        self.assertEqual(env.get("id"), qid, repr(env))
        self.assertEqual(env.sender, "alice@example.test", repr(env))
        self.assertEqual(env.recipients, ["user@example.test", "bob@example.test"], repr(env))
        self.assertEqual([r.get("rcpt-state") for r in env.rcpts], ["pending", "pending"], repr(env))
        self.assertEqual(env.get("size"), str(len(msg)), f"size: vs the .msg file: {env!r}")
        self.assertEqual(env.get("crc32", "").lower(), "%08x" % zlib.crc32(msg),
                         f"crc32: vs the .msg file: {env!r}")
        self.assertTrue(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", env.get("arrival", "")),
                        f"arrival: RFC 3339 UTC: {env!r}")
        self.assertTrue(msg.endswith(BODY))
        for name in (qid + ".env", qid + ".msg"):
            mode = os.stat(self.s.spool_path("queue", name)).st_mode & 0o777
            self.assertEqual(mode, 0o600, f"{name} mode {mode:o}")
        mode = os.stat(self.s.spool_path("queue")).st_mode & 0o777
        self.assertEqual(mode, 0o700, f"queue/ mode {mode:o}")

    def test_ids_sort_by_arrival(self):
        ids = [self.assertQueued(self.c.transaction("alice@example.test", "user@example.test", BODY))
               for _ in range(5)]
        self.assertEqual(ids, sorted(ids), "ids sort by arrival")
        self.assertEqual(self.s.spool_ids(), sorted(ids))


class Volume(SluiceCase):
    def test_large_message_byte_exact(self):
        s = self.sluice()
        c = self.connect(s)
        body = b"Subject: large\r\n\r\n" + b"".join(
            b"%07d " % i + bytes(range(0x21, 0x7f)) * 10 + b"\r\n" for i in range(6000))
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", body))
        self.assertGreater(len(body), 5 * 1024 * 1024)
        self.assertEqual(st.split_received(s.message(qid))[1], body)
        env = s.envelope(qid)
        self.assertEqual(env.get("size"), str(len(s.message(qid))))

    def test_parallel_sessions(self):
        """20 clients at once, 5 messages each: 100 distinct, intact commits."""
        s = self.sluice()
        sent, errors = {}, []
        lock = threading.Lock()

        def client(n):
            try:
                with s.connect() as c:
                    c.ehlo()
                    for i in range(5):
                        body = b"Subject: c%d m%d\r\n\r\nclient %d message %d\r\n" % (n, i, n, i)
                        r = c.transaction(f"c{n}@example.test", "user@example.test", body)
                        qid = st.queued_id(r)
                        if qid is None:
                            raise AssertionError(f"client {n} message {i}: {r}")
                        with lock:
                            if qid in sent:
                                raise AssertionError(f"queue id {qid} given twice")
                            sent[qid] = body
                    c.cmd("QUIT")
            except Exception as e:  # reported by the main thread
                errors.append(f"client {n}: {e!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(st.TIMEOUT * 4)
        if errors:
            self.fail_with_log("\n".join(errors))
        self.assertEqual(len(sent), 100)
        self.assertEqual(sorted(sent), s.spool_ids())
        for qid, body in sent.items():
            env = s.envelope(qid)
            self.assertTrue(env.complete and env.crc_ok, f"{qid}: {env!r}")
            self.assertEqual(st.split_received(s.message(qid))[1], body)


class CrashSafety(SluiceCase):
    def test_kill9_after_250_loses_nothing(self):
        s = self.sluice()
        sent = {}
        c = self.connect(s)
        for i in range(3):
            body = BODY + b"number %d\r\n" % i
            sent[self.assertQueued(c.transaction("alice@example.test", "user@example.test", body))] = body
        s.kill9()
        c.close()
        # Each is in queue/ already, or in the journal (its checkpoint had
        # not run yet) and written back into queue/ by the restart.
        s.start_smtpd()
        self.assertEqual(sorted(sent), s.spool_ids(), "every acknowledged message, after a restart")
        for qid, body in sent.items():
            env = s.envelope(qid)
            self.assertTrue(env.complete and env.crc_ok, f"{qid}.env damaged: {env!r}")
            self.assertEqual(env.recipients, ["user@example.test"])
            self.assertEqual(st.split_received(s.message(qid))[1], body)
        c = self.connect(s)
        self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY),
                          "accepting again after the restart")

    def test_kill9_during_data_leaves_nothing(self):
        s = self.sluice()
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: interrupted\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600)  # > 256 KiB: flushed
        st.wait_until(lambda: s.spool_files("incoming") != [], timeout=2)
        s.kill9()
        c.close()
        s.start_smtpd()
        self.assertEqual(s.spool_ids(), [], "an unacknowledged message must not be committed")
        self.assertEqual(s.spool_files("incoming"), [], "leftovers of the receive removed at start")


    def test_client_vanishing_mid_data_leaves_nothing(self):
        s = self.sluice()
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: gone\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600)
        c.close()
        self.assertTrue(st.wait_until(lambda: s.spool_files("incoming") == []),
                        f"incoming/ not cleaned after the client left: {s.spool_files('incoming')}")
        self.assertEqual(s.spool_ids(), [])
        c = self.connect(s)
        self.assertReply(c.cmd("NOOP"), 250)

    def test_sigterm_with_a_session_in_data(self):
        """SIGTERM while a client is inside DATA: a clean, prompt exit, and
        the unfinished message is not committed."""
        s = self.sluice()
        c = self.connect(s)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: unfinished\r\n\r\nno end yet\r\n")
        s.stop()  # fails the test unless it exits 0 within the timeout
        self.assertEqual(s.spool_ids(), [])
        s.start_smtpd()
        self.assertEqual(s.spool_ids(), [])
        self.assertEqual(s.spool_files("incoming"), [])


class Recovery(SluiceCase):
    def test_leftovers_removed_at_start(self):
        s = self.sluice(start=False)
        for sub in ("incoming", "queue"):
            os.makedirs(os.path.join(s.spool, sub), mode=0o700, exist_ok=True)
        orphan = "18F3A2B4C5D6E0"
        leftovers = {
            ("incoming", "18F3A2B4C5D6A0.msg"): b"Subject: half\r\n\r\nhalf writ",
            ("incoming", "18F3A2B4C5D6A1.env"): b"sluice-envelope 1\nid: 18F3A2B4C5D6A1\n",
            ("queue", orphan + ".msg"): b"Subject: no envelope\r\n\r\n",
        }
        for (sub, name), data in leftovers.items():
            with open(os.path.join(s.spool, sub, name), "wb") as f:
                f.write(data)
        s.start_smtpd()
        self.assertEqual(s.spool_files("incoming"), [], "incoming/ is emptied at start")
        self.assertNotIn(orphan + ".msg", s.spool_files("queue"),
                         "a .msg without its .env was never acknowledged: removed at start")
        c = self.connect(s)
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        self.assertEqual(s.spool_ids(), [qid])

    def test_committed_messages_kept_at_start(self):
        s = self.sluice()
        c = self.connect(s)
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY))
        c.cmd("QUIT")
        before = (s.envelope(qid).raw, s.message(qid))
        s.stop()
        s.start_smtpd()
        self.assertEqual(s.spool_ids(), [qid])
        self.assertEqual((s.envelope(qid).raw, s.message(qid)), before, "untouched by a restart")


class Journal(SluiceCase):
    """Small messages get their 250 once they are in the journal; a
    checkpoint moves them into queue/ milliseconds later (docs/spool.md)."""

    def send(self, s, n):
        sent = {}
        c = self.connect(s)
        for i in range(n):
            body = BODY + b"journaled %d\r\n" % i
            sent[self.assertQueued(c.transaction("alice@example.test", "user@example.test", body))] = body
        c.cmd("QUIT")
        return sent

    def check_queued(self, s, sent):
        self.assertEqual(sorted(sent), s.spool_ids())
        for qid, body in sent.items():
            env = s.envelope(qid)
            self.assertTrue(env.complete and env.crc_ok, f"{qid}.env: {env!r}")
            self.assertEqual(env.recipients, ["user@example.test"])
            self.assertEqual(st.split_received(s.message(qid))[1], body)

    def test_checkpoint_moves_messages_into_queue(self):
        s = self.sluice()
        sent = self.send(s, 5)
        self.check_queued(s, sent)
        self.assertEqual(s.spool_files("incoming"), [])
        self.assertEqual(os.stat(os.path.join(s.spool, "journal")).st_mode & 0o777, 0o600)

    def test_power_cut_before_the_checkpoint_loses_nothing(self):
        """kill -9 while the acknowledged messages wait for their checkpoint
        (no runner took them: the journal is their only copy, nothing is in
        incoming/ or queue/): the restart writes them back from the
        journal, once."""
        s = self.sluice(start=False)
        s.env["SLUICE_SPOOL_CKPT_MS"] = "600000"  # no checkpoint during the test
        s.start_smtpd()
        sent = self.send(s, 3)
        self.assertEqual(s.spool_files("queue"), [], "waiting for the checkpoint")
        self.assertEqual(s.spool_files("incoming"), [], "no file before the checkpoint")
        s.kill9()
        s.env.clear()
        s.start_smtpd()
        self.assertIn("journal: 3 messages written back into queue/", s.log())
        self.check_queued(s, sent)
        s.stop()
        s.start_smtpd()
        self.assertEqual(s.log().count("written back into queue/"), 1,
                         "the mark moved past them: not written back twice")
        self.check_queued(s, sent)

    def test_kill9_after_the_checkpoint_writes_nothing_back(self):
        s = self.sluice()
        sent = self.send(s, 3)
        self.check_queued(s, sent)  # checkpointed
        s.kill9()
        s.start_smtpd()
        # (If the kill fell between the renames and the mark, recovery
        # finds them in queue/ and says so; it writes nothing.)
        self.assertNotIn("restored from the journal", s.log())
        self.check_queued(s, sent)

    def test_damaged_journal_stops_the_start(self):
        """A journal whose structure is damaged may hold acknowledged mail:
        sluice-smtpd will not start over it, and says what to do."""
        s = self.sluice()
        s.stop()
        with open(os.path.join(s.spool, "journal"), "r+b") as f:
            f.seek(4096)  # region 0's header
            f.write(b"XXXX")
        with self.assertRaises(AssertionError) as cm:
            s.start_smtpd()
        s.daemons.pop("sluice-smtpd", None)  # exited at start, as it must
        self.assertIn("region 0 has no valid header", str(cm.exception))
        self.assertIn("Move it aside", str(cm.exception))

    def test_second_smtpd_on_one_spool_refused(self):
        s = self.sluice()
        other = self.sluice(start=False)
        other.write_config(server={"spool": s.spool})
        with self.assertRaises(AssertionError) as cm:
            other.start_smtpd()
        other.daemons.pop("sluice-smtpd", None)
        self.assertIn("another sluice-smtpd uses this spool", str(cm.exception))
        self.assertQueued(self.connect(s).transaction("alice@example.test", "user@example.test",
                                                      BODY), "the first one goes on")


class DiskFull(SluiceCase):
    def test_full_disk_gives_452_and_leaves_nothing(self):
        s = self.sluice(start=False)
        # 9 MiB: the journal's 8 MiB, and 1 MiB for messages. Skips the
        # test where mounting is not allowed.
        s.use_tmpfs_spool("9m")
        s.write_config(smtpd={"max_message_size": 50 * 1024 * 1024})
        s.start_smtpd()
        c = self.connect(s)
        big = b"Subject: big\r\n\r\n" + (b"f" * 998 + b"\r\n") * 2100  # ~2 MiB
        r = c.transaction("alice@example.test", "user@example.test", big, check=False)
        self.assertReply(r, 452, "4.3.1", "2 MiB into a 1 MiB spool")
        self.assertEqual(s.spool_ids(), [], "nothing committed")
        self.assertEqual(s.spool_files("queue"), [], "nothing half-written in queue/")
        # the refused message's partial file is unlinked off the event loop
        self.assertTrue(st.wait_until(lambda: s.spool_files("incoming") == [], timeout=5),
                        f"the partial file removed: {s.spool_files('incoming')}")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "the session goes on")
        qid = self.assertQueued(c.transaction("alice@example.test", "user@example.test", BODY),
                                "a small message fits once the partial one is gone")
        self.assertEqual(s.spool_ids(), [qid])


if __name__ == "__main__":
    st.main()
