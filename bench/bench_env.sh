# shellcheck shell=bash
# bench/bench_env.sh - sourced by the bench scripts that run Sluice by hand
# (drain.sh, trace_session.sh): a private mount namespace and a work folder
# with a spool, Maildirs and a config on loopback. Not a program.

# Runs the calling script again inside a private mount namespace, once:
#   bench_private_ns "$0" "$@"
bench_private_ns() {
    if [ -z "${SLUICE_BENCH_NS:-}" ]; then
        export SLUICE_BENCH_NS=1
        if unshare -m --propagation private true 2>/dev/null; then
            exec unshare -m --propagation private "$@"
        fi
        # In a chroot, whose / is not a mount point, the propagation of /
        # cannot be changed (bench/compare meets the same): a namespace that
        # keeps it, and bench_ns_cleanup undoes the resolv.conf bind.
        export SLUICE_BENCH_UNMOUNT=1
        exec unshare -m --propagation unchanged "$@"
    fi
}

# For the scripts' EXIT traps: undoes bench_work_setup's bind of
# /etc/resolv.conf where the namespace could not be made private.
bench_ns_cleanup() {
    if [ "${SLUICE_BENCH_UNMOUNT:-}" = 1 ]; then
        umount /etc/resolv.conf 2>/dev/null || true
    fi
}

# bench_work_setup WORK PORT USER... - moves an earlier WORK aside into
# WORK.retired/ (not deleted: on ext4 without a journal every file created
# in the next minutes would walk the inodes a delete freed, a tax of the
# harness on the run measured; docs/performance.md, "A benchmark
# artefact"), makes WORK afresh and cds into it; writes
# a resolv.conf naming 127.0.0.1 over /etc/resolv.conf (inside the private
# namespace: no lookup leaves the machine), a Maildir and a mailboxes entry
# USER@bench.test for each USER, and sluice.conf (smtpd on 127.0.0.1:PORT,
# no SPF, spool in WORK/spool, connection limits as in bench/compare).
bench_work_setup() {
    local work=$1 port=$2 u
    shift 2
    if [ -e "$work" ]; then
        mkdir -p "$work.retired"
        mv "$work" "$work.retired/$(date +%s%N)"
        echo "$0: the last run's files are in $work.retired/; remove them when no run follows within minutes" >&2
    fi
    mkdir -p "$work"
    cd "$work" || return
    printf 'nameserver 127.0.0.1\n' >resolv.conf
    mount --bind resolv.conf /etc/resolv.conf
    : >aliases
    : >mailboxes
    for u in "$@"; do
        mkdir -p "mail/$u/new" "mail/$u/cur" "mail/$u/tmp"
        echo "$u@bench.test $work/mail/$u" >>mailboxes
    done
    cat >sluice.conf <<EOF
[server]
hostname = mx.bench.test
spool = spool
log = stderr
[smtpd]
listen = 127.0.0.1:$port mx
max_connections = 20000
max_connections_per_ip = 20000
trusted_networks = 127.0.0.0/8
spf = off
[domains]
local = bench.test
mailboxes = mailboxes
aliases = aliases
[delivery]
dns_servers = 127.0.0.1:9
EOF
}

# Waits (up to 5 s) until sluice-smtpd in the work folder is ready.
bench_wait_smtpd() {
    local _
    for _ in $(seq 50); do
        [ -S spool/run/submit.sock ] && return 0
        sleep 0.1
    done
    return 0 # the load that follows reports a server that is not there
}
