"""interop - helpers for the interoperability tests (stdlib only), on top of
sluicetest (the shared harness).

  Dovecot      a private Dovecot (dovecot -F -c CONF) in a temp dir: IMAP and
               POP3 on free 127.0.0.1 ports, its own base_dir/state_dir, a
               passwd-file passdb the test controls (set_password uses
               `doveadm pw`), a static userdb whose mail processes run as
               the user that sluice-delivery writes the Maildirs as, and an
               auth-client unix socket for Sluice (auth_socket).
  Postfix      a private Postfix (postfix -c DIR start): its own
               config_directory, queue_directory and data_directory, smtpd
               on a free 127.0.0.1 port with STARTTLS, a log file, virtual
               mailboxes for its own domain, transport_maps to Sluice.
  mail_user()  the system user the Sluice daemons drop to and Dovecot's mail
               processes run as ("mail": in Debian's base-passwd, so nothing
               is created or removed).
  sluice_as()  a Sluice instance (sluicetest.Sluice) prepared to run as that
               user: its folder 0711, its Maildir root owned by the user;
               write_config_as() keeps [server] user in every rewrite.
  submit()     one message over 587 (STARTTLS + AUTH) with smtplib.
  make_sasldb() a Cyrus sasldb with one login (saslpasswd2).

Everything started here is stopped by the TestCase's cleanups.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import tempfile
import time
import unittest

import sluicetest as st

MAIL_USER = "mail"


def need_root():
    if os.geteuid() != 0:
        raise unittest.SkipTest(
            "the interop peers (Dovecot's mail processes, Postfix) need root to start: "
            "the suite runs them as root in CI")


def mail_user():
    """(name, uid, gid) of the user that owns the Maildirs."""
    try:
        pw = pwd.getpwnam(MAIL_USER)
    except KeyError:
        raise unittest.SkipTest(f"no system user {MAIL_USER!r} (Debian's base-passwd has it)")
    return MAIL_USER, pw.pw_uid, pw.pw_gid


def sluice_as(case, **kw):
    """A SluiceCase's Sluice (not started) whose daemons drop to mail_user():
    the folder is 0711 (the user must reach spool/ and the maps), the
    Maildir root is the user's."""
    name, uid, gid = mail_user()
    s = case.sluice(start=False, **kw)
    os.chmod(s.dir, 0o711)
    os.chown(s.maildir_root, uid, gid)
    s.user = name
    return s


def write_config_as(s, **sections):
    """s.write_config with [server] user = mail_user() kept in."""
    server = dict(sections.pop("server", {}))
    server.setdefault("user", mail_user()[0])
    return s.write_config(server=server, **sections)


def give_to_mail_user(path, mode=0o600):
    """A file the dropped daemons must read (a sasldb)."""
    _, uid, gid = mail_user()
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submit(s, login, password, sender, rcpts, body, kind="submission"):
    """Sends one message as a mail client does: EHLO, STARTTLS, EHLO, AUTH
    (smtplib picks PLAIN), MAIL/RCPT/DATA. Returns the queue id; raises
    smtplib.SMTPAuthenticationError on a 535."""
    port = s.ports[kind]
    if kind == "smtps":
        c = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.test",
                             timeout=st.TIMEOUT, context=client_ctx())
    else:
        c = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=st.TIMEOUT)
    try:
        c.ehlo()
        if kind != "smtps":
            c.starttls(context=client_ctx())
            c.ehlo()
        c.login(login, password)
        rcpts = [rcpts] if isinstance(rcpts, str) else list(rcpts)
        code, text = c.mail(sender)
        if code != 250:
            raise AssertionError(f"MAIL refused: {code} {text!r}")
        for r in rcpts:
            code, text = c.rcpt(r)
            if code != 250:
                raise AssertionError(f"RCPT {r} refused: {code} {text!r}")
        code, text = c.data(body)
        if code != 250:
            raise AssertionError(f"DATA refused: {code} {text!r}")
        m = re.search(rb"queued as ([0-9A-F]{14})", text)
        if not m:
            raise AssertionError(f"no queue id in {text!r}")
        return m.group(1).decode()
    finally:
        try:
            c.quit()
        except Exception:
            c.close()


def make_sasldb(path, login, password):
    user, _, domain = login.partition("@")
    subprocess.run(["saslpasswd2", "-f", path, "-u", domain, "-c", "-p", user],
                   input=password.encode(), check=True, capture_output=True)


def maildir_entries(path):
    """{"new/NAME" or "cur/NAME": bytes} of a Maildir's messages."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    out[f"{sub}/{name}"] = f.read()
    return out


def crlf(data):
    """Line ends as CRLF, whatever they were (Maildir files use LF)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def wait_log(text_fn, pattern, timeout=st.TIMEOUT):
    rx = re.compile(pattern)
    if st.wait_until(lambda: rx.search(text_fn()), timeout, 0.05):
        return rx.search(text_fn())
    return None


# ---------------------------------------------------------------------------
# Dovecot

class Dovecot:
    """A private Dovecot. mail_location may name {root} (the Maildirs'
    parent) and uses Dovecot's %n (the local part of the login). users:
    {login: password}. auth_socket_user: who may connect to auth_socket."""

    def __init__(self, case, *, mail_root, users=None, protocols=("imap", "pop3"),
                 mechanisms="plain login", auth_socket_user="root"):
        exe = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.access(exe, os.X_OK):
            raise unittest.SkipTest("Dovecot is not installed (scripts/deps installs "
                                    "dovecot-imapd and dovecot-pop3d)")
        need_root()
        self.exe = exe
        self.case = case
        self.dir = tempfile.mkdtemp(prefix="sluice-dovecot-")
        os.chmod(self.dir, 0o755)
        self.mail_root = mail_root
        self.protocols = list(protocols)
        self.mechanisms = mechanisms
        self.auth_socket_user = auth_socket_user
        self.ports = {p: st.free_port() for p in self.protocols}
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.passwd = os.path.join(self.dir, "passwd")
        self.auth_socket = os.path.join(self.dir, "auth-client")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.daemon = None
        self._stamp = int(time.time()) - 1000
        self.users = {}
        for login, pw in (users or {}).items():
            self.users[login] = self.hash(pw)
        self._write_passwd()
        case.addCleanup(self.cleanup)

    def hash(self, password):
        """{SHA512-CRYPT}... from `doveadm pw` (Dovecot's own tool)."""
        r = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", password],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0 or not r.stdout.startswith("{SHA512-CRYPT}"):
            raise AssertionError(f"doveadm pw failed: {r.stdout}{r.stderr}")
        return r.stdout.strip()

    def _write_passwd(self):
        tmp = self.passwd + ".tmp"
        with open(tmp, "w") as f:
            for login, h in self.users.items():
                f.write(f"{login}:{h}\n")
        # Dovecot's auth process runs as its internal user "dovecot": the
        # file is root:dovecot 0640, as in docs/dovecot.md.
        try:
            os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
        except KeyError:
            pass
        os.chmod(tmp, 0o640)
        os.replace(tmp, self.passwd)
        # Dovecot re-reads the file when its mtime or size changed, looking at
        # most once a second: give each version its own mtime, and let a
        # second pass before the next lookup.
        self._stamp += 1
        os.utime(self.passwd, (self._stamp, self._stamp))

    def set_password(self, login, password):
        """Changes one password in the passwd-file, as an admin would with
        doveadm pw and an editor. Returns once Dovecot will see it."""
        self.users[login] = self.hash(password)
        self._write_passwd()
        time.sleep(1.1)

    def config_text(self):
        name, uid, gid = mail_user()
        mail = f"maildir:{self.mail_root}/%n"
        lines = [
            f"protocols = {' '.join(self.protocols) or 'none'}",
            "listen = 127.0.0.1",
            f"base_dir = {self.dir}/run",
            f"state_dir = {self.dir}/state",
            f"instance_name = {os.path.basename(self.dir)}",
            f"log_path = {self.log_path}",
            "ssl = no",
            # loopback IMAP/POP3 logins count as secured; Sluice's requests
            # carry "secured" themselves: the default stays on.
            "disable_plaintext_auth = yes",
            f"auth_mechanisms = {self.mechanisms}",
            "auth_failure_delay = 0",
            f"first_valid_uid = {uid}",
            f"first_valid_gid = {gid}",
            f"mail_location = {mail}",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=SHA512-CRYPT {self.passwd}",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={uid} gid={gid} home={self.mail_root}/%n allow_all_users=yes",
            "}",
            "service auth {",
            f"  unix_listener {self.auth_socket} {{",
            "    mode = 0600",
            f"    user = {self.auth_socket_user}",
            "  }",
            "}",
        ]
        for proto, port in self.ports.items():
            lines += [
                f"service {proto}-login {{",
                f"  inet_listener {proto} {{",
                "    address = 127.0.0.1",
                f"    port = {port}",
                "  }",
                f"  inet_listener {proto}s {{",
                "    port = 0",
                "  }",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def start(self):
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(self.config_text())
        if os.path.exists(self.auth_socket) and not st.unix_bound(self.auth_socket):
            os.unlink(self.auth_socket)  # Dovecot will not replace a socket file
        d = st.Daemon("dovecot", st.spawn([self.exe, "-F", "-c", self.conf],
                                          os.path.join(self.dir, "dovecot.out")),
                      os.path.join(self.dir, "dovecot.out"))
        self.daemon = d

        def ready():
            return (all(st.tcp_listening(p) for p in self.ports.values())
                    and st.unix_bound(self.auth_socket, True))
        if not st.wait_until(lambda: not d.alive() or ready()) or not d.alive():
            d.kill9()
            raise AssertionError(f"dovecot did not start:\n{d.log()}\n{self.log()}")

    def stop(self):
        if self.daemon is not None:
            self.daemon.stop()  # its exit status is not under test
            self.daemon = None

    def cleanup(self):
        self.stop()
        if not st.KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @property
    def imap_port(self):
        return self.ports["imap"]

    @property
    def pop3_port(self):
        return self.ports["pop3"]


# ---------------------------------------------------------------------------
# Postfix

class Postfix:
    """A private Postfix on 127.0.0.1:<port>. domain: its own mail domain,
    delivered to virtual Maildirs below DIR/mail/ for users; relay: {domain:
    "[127.0.0.1]:PORT"} written to transport_maps (no DNS for Postfix)."""

    def __init__(self, case, *, hostname="pf.test", domain="pf.test", users=("bob",),
                 relay=None, extra_main=None):
        if not (shutil.which("postfix") or os.access("/usr/sbin/postfix", os.X_OK)):
            raise unittest.SkipTest("Postfix is not installed (scripts/deps installs postfix)")
        need_root()
        try:
            pwd.getpwnam("postfix")
            grp.getgrnam("postdrop")
        except KeyError:
            raise unittest.SkipTest("the postfix user or postdrop group is missing")
        self.case = case
        self.dir = tempfile.mkdtemp(prefix="sluice-postfix-")
        os.chmod(self.dir, 0o755)  # Postfix's daemons (as postfix) and virtual go in
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.mail = os.path.join(self.dir, "mail")
        self.log_path = os.path.join(self.dir, "maillog")
        self.hostname = hostname
        self.domain = domain
        self.port = st.free_port()
        self.relay = dict(relay or {})
        self.users = list(users)
        self.extra_main = dict(extra_main or {})
        for d in (self.etc, self.queue, self.data, self.mail):
            os.makedirs(d)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        self.started = False
        case.addCleanup(self.cleanup)

    def maildir(self, user):
        return os.path.join(self.mail, user)

    def write_config(self):
        cert, key = st.test_cert()
        nobody = pwd.getpwnam("nobody")
        for u in self.users:
            for sub in ("new", "cur", "tmp"):
                os.makedirs(os.path.join(self.mail, u, sub), exist_ok=True)
        for dirpath, _, _ in os.walk(self.mail):
            os.chown(dirpath, nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in self.users:
                f.write(f"{u}@{self.domain} {u}/\n")
        with open(os.path.join(self.etc, "transport"), "w") as f:
            for dom, nexthop in self.relay.items():
                f.write(f"{dom} smtp:{nexthop}\n")
        # Postfix's smtpd runs as postfix and reads the key before that; a
        # copy readable by root only is what a real install has.
        shutil.copy(cert, os.path.join(self.etc, "cert.pem"))
        shutil.copy(key, os.path.join(self.etc, "key.pem"))
        os.chmod(os.path.join(self.etc, "key.pem"), 0o600)
        for name in ("dynamicmaps.cf",):
            if os.path.exists(f"/etc/postfix/{name}"):
                shutil.copy(f"/etc/postfix/{name}", self.etc)
        if os.path.isdir("/etc/postfix/dynamicmaps.cf.d"):
            shutil.copytree("/etc/postfix/dynamicmaps.cf.d",
                            os.path.join(self.etc, "dynamicmaps.cf.d"), dirs_exist_ok=True)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.dir,
            "myhostname": self.hostname,
            "mydomain": self.domain,
            "myorigin": self.domain,
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_maps": f"texthash:{self.etc}/vmailbox",
            "virtual_mailbox_base": self.mail,
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "relay_domains": " ".join(self.relay) or "",
            "transport_maps": f"texthash:{self.etc}/transport",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            # unknown local users are refused at RCPT (550 5.1.1)
            "smtpd_reject_unlisted_recipient": "yes",
            "smtpd_tls_cert_file": f"{self.etc}/cert.pem",
            "smtpd_tls_key_file": f"{self.etc}/key.pem",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_received_header": "yes",
            "smtpd_tls_loglevel": "1",
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
            # no DNS anywhere on the Postfix side: next hops are [IP]:port
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "maximal_queue_lifetime": "1h",
            "queue_run_delay": "5s",
            "minimal_backoff_time": "5s",
            "maximal_backoff_time": "10s",
            "delay_warning_time": "0",
        }
        main.update(self.extra_main)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# written by test/integration/interop.py\n")
            for k, v in main.items():
                f.write(f"{k} = {v}\n")
        # Debian's master.cf, without chroot (a private queue directory has
        # no copy of /etc in it), smtpd on our loopback port.
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                line = line.rstrip("\n")
                if re.match(r"^smtp\s+inet\s", line):
                    out.append(f"127.0.0.1:{self.port} inet n - n - - smtpd")
                    continue
                m = re.match(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)(\S+)(\s+.*)$", line)
                if m and not line.startswith("#"):
                    line = m.group(1) + "n" + m.group(3)
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("\n".join(out) + "\n")

    def postfix(self, *args):
        """Runs the postfix command (its output to a file: the master it
        starts must not hold a pipe of ours)."""
        out = os.path.join(self.dir, "postfix-command.log")
        with open(out, "ab") as f:
            r = subprocess.run(["postfix", "-c", self.etc] + list(args), stdin=subprocess.DEVNULL,
                               stdout=f, stderr=f)
        return r.returncode

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            return pid if os.path.exists(f"/proc/{pid}") else None
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        self.write_config()
        rc = self.postfix("start")
        self.started = True
        if not st.wait_until(lambda: self.master_pid() and st.tcp_listening(self.port), 20):
            raise AssertionError(f"postfix did not start (rc {rc}):\n{self.command_log()}\n"
                                 f"{self.log()}")

    def stop(self):
        if not self.started:
            return
        self.started = False
        pid = self.master_pid()
        self.postfix("stop")
        if pid and not st.wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 15):
            self.postfix("abort")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def flush(self):
        self.postfix("flush")

    def cleanup(self):
        self.stop()
        if not st.KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def command_log(self):
        try:
            with open(os.path.join(self.dir, "postfix-command.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def smtp(self):
        c = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test", timeout=st.TIMEOUT)
        self.case.addCleanup(_close_quietly, c)
        return c


def _close_quietly(c):
    try:
        c.close()
    except Exception:
        pass
