#!/usr/bin/python3
"""`cmake --install` lays Sluice out like an MTA, and its systemd units pass
`systemd-analyze verify`.

The tree is installed under a temporary prefix (not DESTDIR) so that the
units name programs that really exist there, which is what verify checks;
MANPATH points man at the installed pages so that each unit's
Documentation=man:... is checked too."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import sluicetest as st

UNITS = ("sluice-smtpd.service", "sluice-delivery.service")
PAGES = {"man8": ("sluice.8", "sluice-smtpd.8", "sluice-delivery.8"), "man5": ("sluice.conf.5",)}


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.build = os.path.dirname(st.BIN)
        if not os.path.exists(os.path.join(cls.build, "CMakeCache.txt")):
            raise unittest.SkipTest(f"no build tree at {cls.build} (SLUICE_BIN is not in one)")
        cls.root = tempfile.mkdtemp(prefix="sluice-install-")
        cls.prefix = os.path.join(cls.root, "usr")
        p = subprocess.run(["cmake", "--install", cls.build, "--prefix", cls.prefix],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            shutil.rmtree(cls.root, True)
            raise AssertionError("cmake --install failed:\n" + p.stdout + p.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, True)

    def path(self, *parts):
        return os.path.join(self.prefix, *parts)

    def unit(self, name):
        with open(self.path("lib/systemd/system", name)) as f:
            return f.read()

    def test_programs_links_pages_example(self):
        for prog in ("sluice", "sluice-smtpd", "sluice-delivery"):
            self.assertTrue(os.access(self.path("sbin", prog), os.X_OK), prog)
        for link in ("sendmail", "mailq"):
            self.assertEqual(os.readlink(self.path("sbin", link)), "sluice", link)
        for section, pages in PAGES.items():
            for page in pages:
                self.assertTrue(os.path.isfile(self.path("share/man", section, page)), page)
        example = self.path("share/doc/sluice/sluice.conf.example")
        with open(example) as f:
            text = f.read()
        for want in ("25 mx", "587 submission", "465 smtps", "/var/spool/sluice",
                     "/etc/letsencrypt/", "user = sluice"):
            self.assertIn(want, text, f"{example} lacks {want!r}")

    def test_units_name_installed_programs_and_are_hardened(self):
        for name in UNITS:
            text = self.unit(name)
            prog = name.split(".")[0]
            self.assertRegex(text, rf"(?m)^ExecStart={re.escape(self.path('sbin', prog))} "
                                   r"-c /etc/sluice/sluice\.conf$")
            self.assertRegex(text, r"(?m)^ExecReload=/bin/kill -HUP \$MAINPID$")
            for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
                self.assertRegex(text, rf"(?m)^{re.escape(key)}$", f"{name}: {key}")
            self.assertNotIn("@", text, f"{name}: a placeholder was left unsubstituted")
        self.assertRegex(self.unit("sluice-smtpd.service"),
                         r"(?m)^CapabilityBoundingSet=.*\bCAP_NET_BIND_SERVICE\b")

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        self.assertIsNotNone(tool, "systemd-analyze is missing: scripts/deps installs systemd")
        self.assertIsNotNone(shutil.which("man"), "man is missing: scripts/deps installs man-db")
        units = [self.path("lib/systemd/system", u) for u in UNITS]
        p = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, MANPATH=self.path("share/man")))
        # verify exits 0 on mere warnings (an unknown key, say): any output is a finding
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))

    def test_verify_catches_a_broken_unit(self):
        """The check above can fail: a misspelt key is reported."""
        bad = os.path.join(self.root, "sluice-bad.service")
        with open(bad, "w") as f:
            f.write(self.unit(UNITS[0]).replace("ProtectSystem=", "ProtectSytem="))
        p = subprocess.run(["systemd-analyze", "verify", bad], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, MANPATH=self.path("share/man")))
        self.assertIn("Unknown key", p.stdout + p.stderr)

    def test_man_pages_render_without_warnings(self):
        for section, pages in PAGES.items():
            for page in pages:
                p = subprocess.run(["man", "--warnings", "-l", self.path("share/man", section, page)],
                                   capture_output=True, text=True, timeout=60,
                                   env=dict(os.environ, MANWIDTH="80"))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr, "", page)
                self.assertIn("NAME", p.stdout, page)


if __name__ == "__main__":
    unittest.main()
