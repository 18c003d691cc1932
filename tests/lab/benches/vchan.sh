#!/bin/bash
# vchan: echo throughput through Debian's vchan-socket-proxy with grantsvc as the echo peer against the same proxy between two dom0 processes (server and client mode over one vchan), rounds alternating in one boot; then grantsvc's service-loop turns (stats' turns=) while one connected vchan session sits idle 10 s. GOAL vchan-vs-dom0: grantsvc's median KiB/s over dom0's >=1.
# lab-timeout: 1200
. "$LAB_LIB"

bytes=$((1024 * 1024))
# Under TCG one round's rate moves by up to a half from the next (session 8: 0.79 and 1.06
# in two boots at 3 rounds): 7 alternating rounds make the medians steadier.
rounds=7
idle_seconds=10
input=/tmp/vchan-bench.in
head -c "$bytes" /dev/urandom >"$input"
sent=$(sha256sum <"$input" | cut -d' ' -f1)

# kib_per_second LOG: the rate socket-exchange reports on its verdict line.
kib_per_second() {
    sed -n 's/^grantsvc-peer: socket-exchange ok: .*(\([0-9][0-9]*\) KiB\/s)$/\1/p' "$1"
}

# check_echo LOG OUTPUT WHAT: fails unless the exchange succeeded and the echo equals the input.
check_echo() {
    grep -q '^grantsvc-peer: socket-exchange ok: ' "$1" || fail "$3: $(tail -n 1 "$1")"
    [ "$(sha256sum <"$2" | cut -d' ' -f1)" = "$sent" ] || fail "$3: the echo differs from what was sent"
}

# stop PID: ends a proxy this script started and waits for it.
stop() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# revoked_count NAME: how many of grantsvc's sessions at $base/NAME have ended so far.
revoked_count() { grep -c -E "vchan: session d0#[0-9]+ with domain 0 at $base/$1 revoked: " "$(console_log)"; }

# grantsvc_round N: 1 MiB through the proxy to grantsvc's echo; sets `rate`.
grantsvc_round() {
    local name=echo-$1 ended
    ended=$(revoked_count "$name")
    start_proxied_exchange "$name" "grantsvc-$1" --echo "$input" --output "/tmp/vchan-bench-g$1.out" --timeout 300
    wait "$exchange"
    check_echo "$LAB_OUT/grantsvc-$1-exchange" "/tmp/vchan-bench-g$1.out" "grantsvc round $1"
    rate=$(kib_per_second "$LAB_OUT/grantsvc-$1-exchange")
    stop "$proxy"
    wait_until_revoked "$name" "$ended"
}

# wait_until_revoked NAME COUNT: waits for grantsvc to end one more session at $base/NAME.
wait_until_revoked() {
    local tries
    for ((tries = 150; tries > 0; tries--)); do
        [ "$(revoked_count "$1")" -gt "$2" ] && return 0
        sleep 0.2
    done
    fail "grantsvc's session at $base/$1 did not end within 30 s of its server's"
}

# dom0_round N: 1 MiB through vchan-socket-proxy -m server (to socket-exchange) and a second
# vchan-socket-proxy -m client in dom0 whose stdout feeds its stdin through a fifo: the echo
# peer is the proxy itself, so the same program sits at both ends of the vchan. Sets `rate`.
dom0_round() {
    local path=$dom0_base/echo-$1 socket=/tmp/vchan-bench-d$1.sock fifo=/tmp/vchan-bench-d$1.fifo
    local exchange_pid server client tries
    rm -f "$socket" "$fifo"
    mkfifo "$fifo"
    grantsvc-peer socket-exchange --listen "$socket" --echo "$input" --output "/tmp/vchan-bench-d$1.out" \
        --timeout 300 >"$LAB_OUT/dom0-$1-exchange" 2>&1 &
    exchange_pid=$!
    wait_socket "$socket" 10 || fail "socket-exchange is not listening on $socket"
    vchan-socket-proxy -m server 0 "$path" "$socket" >"$LAB_OUT/dom0-$1-server" 2>&1 &
    server=$!
    kill_at_exit "$server"
    for ((tries = 100; tries > 0; tries--)); do
        xenstore-read "$path/event-channel" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # Opened read-write first, so that neither open of the fifo waits for the other end.
    vchan-socket-proxy -m client 0 "$path" - 0<>"$fifo" 1>"$fifo" 2>"$LAB_OUT/dom0-$1-client" &
    client=$!
    kill_at_exit "$client"
    wait "$exchange_pid"
    check_echo "$LAB_OUT/dom0-$1-exchange" "/tmp/vchan-bench-d$1.out" "dom0 round $1"
    rate=$(kib_per_second "$LAB_OUT/dom0-$1-exchange")
    stop "$client"
    stop "$server"
    xenstore-rm "$path" 2>/dev/null
}

start_vchan_guest
dom0_base=/local/domain/0/data/vchan-bench
xenstore-write "$dom0_base" "" || fail "creating $dom0_base"

grantsvc_rates=()
dom0_rates=()
for ((round = 1; round <= rounds; round++)); do
    # Alternating which goes first, so that drift on the host hits both alike.
    if ((round % 2)); then
        grantsvc_round "$round"
        grantsvc_rates+=("$rate")
        dom0_round "$round"
        dom0_rates+=("$rate")
    else
        dom0_round "$round"
        dom0_rates+=("$rate")
        grantsvc_round "$round"
        grantsvc_rates+=("$rate")
    fi
    step "round $round: grantsvc ${grantsvc_rates[-1]} KiB/s, dom0 to dom0 ${dom0_rates[-1]} KiB/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ value[NR] = $1 } END { print value[int((NR + 1) / 2)] }'; }
grantsvc_median=$(median "${grantsvc_rates[@]}")
dom0_median=$(median "${dom0_rates[@]}")
[ "${dom0_median:-0}" -gt 0 ] || fail "no dom0-to-dom0 rate measured"
ratio=$(awk -v a="$grantsvc_median" -v b="$dom0_median" 'BEGIN { printf "%.2f", a / b }')

# Idle: two `stats` over one cmd session (the proxy's stdin), $idle_seconds s apart: the
# difference in turns= is what the loop did while a connected session sat idle, plus the
# second command's own turns.
step "stats, $idle_seconds s idle, stats on one cmd session"
(echo stats; sleep "$idle_seconds"; echo stats; sleep 2) |
    timeout 120 vchan-socket-proxy -m server "$domid" "$base/cmd" - >"$LAB_OUT/idle-stats" 2>"$LAB_OUT/idle-proxy"
mapfile -t turns < <(sed -n 's/^stats .* turns=\([0-9][0-9]*\)$/\1/p' "$LAB_OUT/idle-stats")
[ ${#turns[@]} -ge 2 ] || fail "the idle cmd session did not answer two stats (got: $(tr '\n' ' ' <"$LAB_OUT/idle-stats"))"
idle_turns=$((turns[1] - turns[0]))

table "vchan echo of $((bytes / 1024)) KiB through vchan-socket-proxy, KiB/s ($rounds rounds alternating); one boot, $(date -u '+%Y-%m-%d %H:%M UTC')" \
    "| echo peer | KiB/s per round | median |" \
    "|---|---|---:|" \
    "| grantsvc (proxy -m server in dom0, grantsvc's vchan client) | ${grantsvc_rates[*]} | $grantsvc_median |" \
    "| dom0 (proxy -m server and proxy -m client in dom0) | ${dom0_rates[*]} | $dom0_median |" \
    "grantsvc / dom0: $ratio" \
    "grantsvc's service-loop turns while one connected vchan session sat idle $idle_seconds s (and answered one stats): $idle_turns"
goal vchan-vs-dom0 "$ratio" '>=1'
xenstore-rm "$dom0_base" 2>/dev/null
destroy_guest
pass
