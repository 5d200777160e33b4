#!/bin/sh
# queue_list_bench.sh - how long `sluice queue list` takes on a big queue.
#
#   bench/queue_list_bench.sh [BUILD_DIR] [COUNT]     (defaults: build 100000)
#
# Builds bench/queue_list_bench.c against BUILD_DIR's libraries, fills a
# temporary spool with COUNT committed messages (a third deferred, 2% on
# hold, 1-4 recipients each), then times, three times each with a warm page
# cache: `queue list`, `queue list --json`, `queue list --state deferred`
# and `queue stats`. Prints the best and the worst run. Results and the
# machine they came from: docs/queue.md, "Measurements".
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
count=${2:-100000}
sluice=$build/bin/sluice
[ -x "$sluice" ] || { echo "no $sluice: build first (cmake --build $build --target sluice)" >&2; exit 1; }
for lib in "$build/queue/libsluice_queue.a" "$build/common/libsluice_common.a"; do
    [ -f "$lib" ] || { echo "no $lib: build first" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-listbench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# shellcheck disable=SC2046 # pkg-config prints several flags, to be split
cc -O2 -std=c17 -D_GNU_SOURCE -I"$src/include" "$src/bench/queue_list_bench.c" \
    "$build/queue/libsluice_queue.a" "$build/common/libsluice_common.a" \
    $(pkg-config --libs libuv zlib) -lpthread -o "$tmp/fill"

cat >"$tmp/sluice.conf" <<EOF
[server]
hostname = bench.example.test
spool = spool
[domains]
local = example.test
EOF

echo "filling $tmp/spool with $count messages..."
start=$(date +%s.%N)
"$tmp/fill" "$tmp/spool" "$count"
end=$(date +%s.%N)
echo "filled in $(echo "$end - $start" | bc) s ($(du -sh "$tmp/spool" | cut -f1))"

# Runs a command three times; prints the best and worst wall time, and the
# CPU time (user + system) of the best run: on a shared machine the wall
# time swings with the load, the CPU time much less.
timeit() {
    label=$1
    shift
    best=; worst=; cpu=
    for _ in 1 2 3; do
        s=$(date +%s.%N)
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -f '%U %S' -o "$tmp/cpu" "$@" >"$tmp/out" 2>"$tmp/err" ||
                { echo "$label failed:"; cat "$tmp/err"; exit 1; }
        else
            "$@" >"$tmp/out" 2>"$tmp/err" || { echo "$label failed:"; cat "$tmp/err"; exit 1; }
            echo "0 0" >"$tmp/cpu"
        fi
        e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc)
        if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then
            best=$t
            cpu=$(awk '{print $1 + $2}' "$tmp/cpu")
        fi
        if [ -z "$worst" ] || [ "$(echo "$t > $worst" | bc)" = 1 ]; then worst=$t; fi
    done
    printf '%-36s best %5.2f s (cpu %5.2f s)  worst %5.2f s  %8s lines %10s bytes\n' \
        "$label" "$best" "$cpu" "$worst" "$(wc -l <"$tmp/out")" "$(wc -c <"$tmp/out")"
    echo "    load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# A cold first pass: the page cache holds what `fill` wrote, so this is
# only as cold as this machine allows without dropping caches for everyone.
timeit "sluice queue list" "$sluice" -c "$tmp/sluice.conf" queue list
timeit "sluice queue list --json" "$sluice" -c "$tmp/sluice.conf" queue list --json
timeit "sluice queue list --state deferred" "$sluice" -c "$tmp/sluice.conf" queue list --state deferred
timeit "sluice queue stats" "$sluice" -c "$tmp/sluice.conf" queue stats

# The JSON must be one valid array of every message.
if command -v python3 >/dev/null; then
    "$sluice" -c "$tmp/sluice.conf" queue list --json |
        python3 -c 'import json,sys; a=json.load(sys.stdin); print(f"--json: {len(a)} messages, valid JSON")'
fi
