#!/usr/bin/env bash
# bench/cpu_per_msg.sh [BINDIR] - what one accepted message costs each
# daemon: S sessions of smtp-source (default 50) send N messages (default
# 20,000) of L bytes (default 864, 1 KiB with the headers smtp-source adds)
# to one Maildir, over kept connections, with sluice-delivery delivering
# beside it as in bench/compare. Prints the accept rate and, per daemon,
# CPU (task-clock) and context switches per message, from `perf stat -p`
# when perf is installed, else CPU from /proc/PID/stat; with perf, also
# smtp-source's own CPU per message; and how busy the whole machine was.
# A warm-up of 2,000 messages runs first. NODLV=1 leaves sluice-delivery out (its messages
# stay in the spool). The environment reaches the daemons, so
# UV_THREADPOOL_SIZE=25 reproduces the runner's old pool. Used for the A/B
# measurements in docs/performance.md; single runs vary by ±15 % on a
# shared machine, so alternate the builds being compared. Needs root (a
# private mount namespace whose resolv.conf names 127.0.0.1) and smtp-source
# (package postfix). Asserts nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(cd "${1:-$root/build-bench/bin}" && pwd)
n=${N:-20000}
s=${S:-50}
l=${L:-864}
work=${WORK:-/var/tmp/sluice-cpu}
port=${PORT:-2598}

# shellcheck source=bench/bench_env.sh
. "$root/bench/bench_env.sh"
bench_private_ns "$0" "$@"
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
bench_work_setup "$work" "$port" u1

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; bench_ns_cleanup' EXIT
"$bin/sluice-smtpd" -c sluice.conf 2>smtpd.log &
sp=$!
pids+=("$sp")
bench_wait_smtpd
daemons=("sluice-smtpd:$sp")
if [ -z "${NODLV:-}" ]; then
    "$bin/sluice-delivery" -c sluice.conf 2>delivery.log &
    dp=$!
    pids+=("$dp")
    daemons+=("sluice-delivery:$dp")
fi
have_perf=
command -v perf >/dev/null && have_perf=1
# send COUNT [WRAPPER...]: the load, run under WRAPPER when one is given.
send() {
    local m=$1
    shift
    "$@" smtp-source -s "$s" -m "$m" -l "$l" -f a@client.test -t u1@bench.test \
        -M client.test -d "127.0.0.1:$port"
}
send 2000
sleep 2

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
stats=()
declare -A t0
for d in "${daemons[@]}"; do
    t0[$d]=$(ticks "${d#*:}")
    if [ -n "$have_perf" ]; then
        perf stat -e task-clock,context-switches -x, -o "perf.${d%%:*}" -p "${d#*:}" &
        stats+=($!)
    fi
done
[ ${#stats[@]} -gt 0 ] && sleep 0.5
# The whole machine's busy share over the run (all CPUs, /proc/stat): near
# 100 % means the rate is bound by CPU, not by waits.
cpu_now() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
read -r busy0 all0 < <(cpu_now)
a=$(date +%s.%N)
if [ -n "$have_perf" ]; then
    send "$n" perf stat -e task-clock -x, -o perf.smtp-source --
else
    send "$n"
fi
b=$(date +%s.%N)
read -r busy1 all1 < <(cpu_now)
if [ ${#stats[@]} -gt 0 ]; then
    kill -INT "${stats[@]}"
    wait "${stats[@]}" 2>/dev/null || true
fi
hz=$(getconf CLK_TCK)
awk -v n="$n" -v a="$a" -v b="$b" -v s="$s" -v l="$l" 'BEGIN {
    printf "accepted %d messages of %d bytes at %d sessions in %.2f s: %.0f msgs/s\n",
           n, l, s, b - a, n / (b - a) }'
awk -v b="$((busy1 - busy0))" -v t="$((all1 - all0))" 'BEGIN {
    printf "machine busy: %.0f %% of all CPUs\n", t ? 100 * b / t : 0 }'
if [ -s perf.smtp-source ]; then
    awk -F, -v n="$n" '$3 == "task-clock" {
        printf "smtp-source (the load tool): %.0f us CPU per message\n", $1 * 1000 / n }' perf.smtp-source
fi
for d in "${daemons[@]}"; do
    name=${d%%:*}
    if [ -s "perf.$name" ]; then
        awk -F, -v n="$n" -v d="$name" '
            $3 == "task-clock" { ms = $1 }
            $3 == "context-switches" { cs = $1 }
            END { printf "%s: %.0f us CPU and %.2f context switches per message\n",
                         d, ms * 1000 / n, cs / n }' "perf.$name"
    else
        echo "$name: $((($(ticks "${d#*:}") - t0[$d]) * 1000000 / hz / n)) us CPU per message"
    fi
done
