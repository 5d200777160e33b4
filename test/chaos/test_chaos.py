#!/usr/bin/python3
"""The crash test in its short form, for ctest (label chaos):

    /usr/bin/python3 test/chaos/test_chaos.py -v

runs test/chaos/chaos.py with its defaults (24 kill -9 of sluice-smtpd and
sluice-delivery under load through mx, submission and smtps; about two
minutes) and fails if an acknowledged message was lost, a local copy was
duplicated, a half-written file was seen, the spool did not drain or kept
anything in incoming/ or corrupt/, or a daemon failed to restart, to stop
cleanly or printed a sanitizer report. The long form is
`test/chaos/chaos.py --kills 1000` (docs/reliability.md).

Environment: SLUICE_BIN, SLUICE_SRC (as for the integration tests);
SLUICE_CHAOS_ARGS adds options (e.g. "--kills 40 --seed 7").
"""

import os
import shlex
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chaos  # noqa: E402


class CrashTest(unittest.TestCase):
    def test_kill9_under_load(self):
        args = shlex.split(os.environ.get("SLUICE_CHAOS_ARGS", ""))
        opts = chaos.parse_args(args)
        self.assertGreaterEqual(opts.kills, 20, "the short form makes at least 20 kills")
        ok, c = chaos.run(opts)
        m = c.summary
        self.assertEqual(m["lost"], 0, "acknowledged messages lost")
        self.assertEqual(m["dup_local"], 0, "local duplicates")
        self.assertGreaterEqual(m["kills"], 20)
        self.assertTrue(ok, "problems:\n" + "\n".join(c.problems))


if __name__ == "__main__":
    unittest.main(verbosity=2)
