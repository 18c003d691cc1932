#!/bin/bash
# boot: time from `xl create` to grantsvc serving (its vchan client watching for servers) against `xl create` to a minimal Linux PV domU's /init (lib.sh's: dom0's kernel, a busybox initramfs), rounds alternating in one boot. A table, no goal: issue 10 asks that grantsvc stay far ahead.
# lab-timeout: 900
. "$LAB_LIB"

rounds=3

# seconds_until PATTERN NAME LIMIT STARTED: polls NAME's console log every 50 ms until it matches
# the extended regular expression PATTERN; sets `elapsed` to the seconds since STARTED (date +%s.%N).
# The scenario fails when LIMIT seconds pass first.
seconds_until() {
    local pattern=$1 name=$2 limit=$3 started=$4 log now
    log=$(console_log "$name")
    while :; do
        if grep -q -E -- "$pattern" "$log" 2>/dev/null; then
            now=$(date +%s.%N)
            elapsed=$(awk -v a="$started" -v b="$now" 'BEGIN { printf "%.2f", b - a }')
            return 0
        fi
        now=$(date +%s.%N)
        if awk -v a="$started" -v b="$now" -v limit="$limit" 'BEGIN { exit !(b - a > limit) }'; then
            fail "no /$pattern/ in $name's console within $limit s of xl create"
        fi
        sleep 0.05
    done
}

printf '#!/bin/sh\nexit 0\n' >"$LAB_OUT/init.sh"
initrd=$(linux_domu_initramfs /tmp/boot-bench "$LAB_OUT/init.sh") || fail "no initramfs for the Linux domU"

grantsvc_times=()
linux_times=()
grantsvc_round() {
    local name=grantsvc-boot-$1 started
    started=$(date +%s.%N)
    create_guest "name=\"$name\"" 'extra="loglevel=info"'
    seconds_until 'vchan: serving vchan servers published under' "$name" 60 "$started"
    grantsvc_times+=("$elapsed")
    destroy_guest "$name"
}
linux_round() {
    local name=linux-boot-$1 started
    started=$(date +%s.%N)
    create_linux_domu "$name" "$initrd"
    seconds_until '^linux-domu: init' "$name" 300 "$started"
    linux_times+=("$elapsed")
    destroy_guest "$name"
}
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then
        grantsvc_round "$round"
        linux_round "$round"
    else
        linux_round "$round"
        grantsvc_round "$round"
    fi
    step "round $round: grantsvc ${grantsvc_times[-1]} s, Linux ${linux_times[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ value[NR] = $1 } END { print value[int((NR + 1) / 2)] }'; }
grantsvc_median=$(median "${grantsvc_times[@]}")
linux_median=$(median "${linux_times[@]}")
ratio=$(awk -v a="$linux_median" -v b="$grantsvc_median" 'BEGIN { printf "%.1f", (b > 0) ? a / b : 0 }')
table "xl create to ready, seconds ($rounds rounds alternating); one boot, $(date -u '+%Y-%m-%d %H:%M UTC')" \
    "| domain | ready when | s per round | median |" \
    "|---|---|---|---:|" \
    "| grantsvc (lab build) | 'vchan: serving ...' on its console | ${grantsvc_times[*]} | $grantsvc_median |" \
    "| Linux PV domU (dom0's kernel, busybox initramfs, 192 MiB) | 'linux-domu: init' | ${linux_times[*]} | $linux_median |" \
    "Linux / grantsvc: $ratio"
pass
