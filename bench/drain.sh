#!/usr/bin/env bash
# bench/drain.sh [BINDIR] - how fast sluice-delivery alone empties a spool.
#
# sluice-smtpd takes N messages of 1 KiB (smtp-source, 5 x 10 sessions, one
# Maildir per sender process) while the runner is stopped; then
# sluice-delivery starts and the time until the N-th file is in new/ is
# taken. Prints msgs/s and the runner's CPU. Needs root (a private mount
# namespace whose resolv.conf names 127.0.0.1, so no lookup leaves the
# machine) and smtp-source (package postfix). N=5000 by default; WORK
# (default /var/tmp/sluice-drain) holds the spool and Maildirs, on the disk
# being measured. PREFILL=K puts K older messages into each Maildir first
# (in cur/, named as earlier deliveries left them): every message here
# arrived before the runner started, so each delivery must rule out a copy
# of its own among them. Asserts nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$root/build-bench/bin}" && pwd)
n=${N:-5000}
work=${WORK:-/var/tmp/sluice-drain}
port=${PORT:-2599}

# shellcheck source=bench/bench_env.sh
. "$root/bench/bench_env.sh"
bench_private_ns "$0" "$@"
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
bench_work_setup "$work" "$port" u1 u2 u3 u4 u5
if [ "${PREFILL:-0}" -gt 0 ]; then
    python3 - "$PREFILL" mail/u1 mail/u2 mail/u3 mail/u4 mail/u5 <<'PY'
import os, sys
k = int(sys.argv[1])
for md in sys.argv[2:]:
    for i in range(k):
        name = f"1700000000.M{i:06d}P1Q18F3A2B4C5D6{i % 10}_{i}.old.bench.test"
        with open(os.path.join(md, "cur", name + ":2,S"), "w") as f:
            f.write("Subject: old\n\nold\n")
PY
fi

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; bench_ns_cleanup' EXIT
"$bin/sluice-smtpd" -c sluice.conf 2>smtpd.log &
pids+=($!)
bench_wait_smtpd
loads=()
for u in u1 u2 u3 u4 u5; do
    smtp-source -s 10 -m $((n / 5)) -l 864 -f a@client.test -t "$u@bench.test" \
        -M client.test -d "127.0.0.1:$port" &
    loads+=($!)
done
wait "${loads[@]}"
sleep 1 # the journal's checkpoint: the messages are in queue/

t0=$(date +%s.%N)
"$bin/sluice-delivery" -c sluice.conf 2>delivery.log &
dp=$!
pids+=("$dp")
want=$(((n / 5) * 5))
while [ "$(find mail/*/new -type f | wc -l)" -lt "$want" ]; do
    kill -0 "$dp" 2>/dev/null || {
        echo "sluice-delivery stopped; see $work/delivery.log" >&2
        exit 1
    }
    sleep 0.05
done
t1=$(date +%s.%N)
read -r ut st < <(awk '{print $14, $15}' "/proc/$dp/stat")
hz=$(getconf CLK_TCK)
awk -v n="$want" -v a="$t0" -v b="$t1" -v u="$ut" -v s="$st" -v hz="$hz" 'BEGIN {
    printf "drained %d messages in %.2f s: %.0f msgs/s; sluice-delivery CPU %.2f s user + %.2f s sys\n",
           n, b - a, n / (b - a), u / hz, s / hz }'
