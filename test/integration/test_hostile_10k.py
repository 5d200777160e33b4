#!/usr/bin/python3
"""sluice-smtpd holds 10,000 concurrent connections (issue 6: "10,000
concurrent connections (RLIMIT_NOFILE raised at start) are greeted; past
max_connections new ones get 421").

One sluice-smtpd with max_connections = max_connections_per_ip = 10000;
the test opens 10,000 connections from 127.0.0.2 .. 127.0.0.9 (so that one
source address never runs out of ephemeral ports), reads every greeting,
checks that connection 10,001 gets 421 4.7.0, prints the server's RSS per
connection, closes them all, and checks that a normal client is served.

The server raises its own RLIMIT_NOFILE to the hard limit at start
(smtpd_main.c raise_nofile); this test needs the same for itself and is
skipped, with the reason, when it cannot raise its soft limit far enough.
"""

import resource
import time

import sluicetest as st
import test_hostile_clients as hc

N = 10000
SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 10))


class TenThousand(hc.HostileCase):
    def setUp(self):
        super().setUp()
        have = hc.want_nofile(N + 300)
        if have < N + 100:
            self.skipTest(f"this process cannot raise RLIMIT_NOFILE to {N + 100} "
                          f"(soft limit {have}, hard limit "
                          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]})")

    def test_10000_concurrent_connections_greeted(self):
        s = self.start(max_connections=N, max_connections_per_ip=N)
        pid = s.smtpd().pid
        server_soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
        if server_soft != resource.RLIM_INFINITY and server_soft < N + 50:
            self.fail_with_log(f"sluice-smtpd's RLIMIT_NOFILE is {server_soft}: it cannot hold "
                               f"{N} connections (raise the hard limit for the service)")
        self.assertServes(s, "warm-up")
        before = hc.rss_kib(pid)
        t0 = time.monotonic()
        socks, lines = hc.open_many(s.port(), N, sources=SOURCES, timeout=120)
        try:
            took = time.monotonic() - t0
            bad = [l for l in lines if not l.startswith(b"220 ")]
            self.assertEqual(len(bad), 0, f"{len(bad)} of {N} not greeted, e.g. {bad[:3]}")
            time.sleep(1.0)  # the client-name lookups finish
            after = hc.rss_kib(pid)
            per = (after - before) * 1024 / N
            hc.note(f"10k: {N} connections greeted in {took:.1f}s; server RSS {before} -> "
                    f"{after} KiB: {per:.0f} bytes per connection; "
                    f"{hc.open_fds(pid)} descriptors open in the server")
            extra = hc.SourceConn(s.port(), "127.0.0.10")
            self.addCleanup(extra.close)
            self.assertReply(extra.greeting, 421, "4.7.0", f"connection {N + 1}")
            self.assertClosed(extra, "after the 421")
            self.assertAlive(s)
        finally:
            for sock in socks:
                hc.abort(sock)
        # every slot comes back once the server has seen the closes
        self.assertTrue(st.wait_until(lambda: hc.open_fds(pid) < 100, timeout=30),
                        f"{hc.open_fds(pid)} descriptors still open after the clients left")
        self.assertServes(s, "after 10,000 connections closed")


if __name__ == "__main__":
    st.main()
