#!/usr/bin/env bash
# bench/trace_session.sh [BINDIR] - where one session's message spends its
# time in sluice-smtpd, from a kernel trace.
#
# sluice-smtpd (with RUNNER=1 sluice-delivery beside it, delivering into
# the Maildir and recycling spool files, as in bench/compare; not traced)
# takes 500 messages of 1 KiB from one
# smtp-source session as a warm-up, then M more (default 300) while
# /sys/kernel/tracing records the system calls of its threads and the
# disk's requests. Per message it prints the median and mean of:
#   A  last body bytes read -> the journal's pwrite starts
#   C  the journal's pwrite (durable when it returns)
#   D  pwrite returned -> the 250 is written to the socket
#   E  the 250 -> the next message's body is read (MAIL, RCPT, DATA, body)
# and the disk requests per message (data, metadata, flushes). Needs root
# (tracefs, a private mount namespace whose resolv.conf names 127.0.0.1)
# and smtp-source (package postfix). WORK (default /var/tmp/sluice-trace)
# holds the spool, on the disk being measured; the raw trace stays there.
# Asserts nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$root/build-bench/bin}" && pwd)
m=${M:-300}
work=${WORK:-/var/tmp/sluice-trace}
port=${PORT:-2598}
T=/sys/kernel/tracing

# shellcheck source=bench/bench_env.sh
. "$root/bench/bench_env.sh"
bench_private_ns "$0" "$@"
[ -w "$T/trace" ] || { echo "trace_session: $T is not writable (root, tracefs)" >&2; exit 2; }
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
bench_work_setup "$work" "$port" u1
old_buffer_kb=$(cat "$T/buffer_size_kb")

stop_tracing() {
    echo 0 >"$T/tracing_on"
    echo 0 >"$T/events/raw_syscalls/enable"
    echo 0 >"$T/events/raw_syscalls/filter"
    echo 0 >"$T/events/block/enable"
    echo "$old_buffer_kb" >"$T/buffer_size_kb"
}
"$bin/sluice-smtpd" -c sluice.conf 2>smtpd.log &
pid=$!
dpid=
if [ -n "${RUNNER:-}" ]; then
    "$bin/sluice-delivery" -c sluice.conf 2>delivery.log &
    dpid=$!
fi
trap 'stop_tracing; kill $pid $dpid 2>/dev/null || true; wait 2>/dev/null || true; bench_ns_cleanup' EXIT
bench_wait_smtpd
load() {
    smtp-source -s 1 -m "$1" -l 864 -f a@client.test -t u1@bench.test -M client.test \
        -d "127.0.0.1:$port"
}
load 500
sleep 0.5

ls "/proc/$pid/task" >tasks
echo 0 >"$T/tracing_on"
: >"$T/trace"
echo 65536 >"$T/buffer_size_kb"
sed 's/^/common_pid == /' tasks | paste -sd'|' | sed 's/|/ || /g' >"$T/events/raw_syscalls/filter"
echo 1 >"$T/events/raw_syscalls/enable"
echo 1 >"$T/events/block/block_rq_issue/enable"
echo 1 >"$T/tracing_on"
load "$m"
echo 0 >"$T/tracing_on"
cat "$T/trace" >trace.txt
stop_tracing

python3 - "$work" "$pid" "$m" <<'PY'
import bisect, re, statistics as st, sys
work, loop, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
sysc = re.compile(r'-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (sys_enter|sys_exit): NR (\d+) (.*)')
blk = re.compile(r'block_rq_issue: \S+ (\S+) ')
ev, rq = [], {}
for line in open(f"{work}/trace.txt"):
    x = sysc.search(line)
    if x:
        tid, t, kind, nr, rest = x.groups()
        ev.append((float(t) * 1e6, tid, kind, int(nr), rest))
        continue
    x = blk.search(line)
    if x:
        k = 'flush' if 'F' in x.group(1) else 'metadata' if 'M' in x.group(1) else 'data'
        rq[k] = rq.get(k, 0) + 1
# The body: a read of >= 900 bytes by the loop thread; its fd is the client's.
body, fd_of_read, cfd = [], None, None
for t, tid, kind, nr, rest in ev:
    if tid == loop and nr == 0 and kind == 'sys_enter':
        fd_of_read = rest[1:].split(',')[0]
    if tid == loop and nr == 0 and kind == 'sys_exit' and int(rest.split('= ')[1]) >= 900:
        body.append(t)
        cfd = fd_of_read
if not body:
    sys.exit("trace_session: no message bodies in the trace")
pw_in = [t for t, _, k, nr, _ in ev if nr == 18 and k == 'sys_enter']
pw_out = [t for t, _, k, nr, _ in ev if nr == 18 and k == 'sys_exit']
reply = [t for t, tid, k, nr, r in ev if tid == loop and nr == 1 and k == 'sys_enter'
         and r.startswith('(' + cfd + ',')]
seg = {'A body -> journal write': [], 'C journal write': [], 'D write done -> 250': [],
       'E 250 -> next body': []}
for b in body:
    i = bisect.bisect(pw_in, b)
    if i >= len(pw_in):
        break
    j = bisect.bisect(pw_out, pw_in[i])
    if j >= len(pw_out):
        break
    k = bisect.bisect(reply, pw_out[j])
    if k >= len(reply):
        break
    seg['A body -> journal write'].append(pw_in[i] - b)
    seg['C journal write'].append(pw_out[j] - pw_in[i])
    seg['D write done -> 250'].append(reply[k] - pw_out[j])
    n = bisect.bisect(body, reply[k])
    if n < len(body):
        seg['E 250 -> next body'].append(body[n] - reply[k])
for name, v in seg.items():
    print(f"{name:26s} median {st.median(v):7.1f} us   mean {st.mean(v):7.1f} us   (n={len(v)})")
print("disk requests per message: " +
      ", ".join(f"{k} {rq[k] / m:.2f}" for k in ('data', 'metadata', 'flush') if k in rq))
print(f"raw trace: {work}/trace.txt")
PY
