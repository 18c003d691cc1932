#!/bin/bash
# idle: with one vchan session connected and nothing to do, grantsvc writes nothing to xenstore for 10 s (no publication causes the next) and its service loop turns only for its two half-second timers (the vchan poll and the liveness check): at most 50 turns in 10 s, counted by two `stats` on the idle session.
# lab-timeout: 200
. "$LAB_LIB"

# The timers: the vchan client polls its connected sessions every 500 ms (a server killed
# without a signal is found so) and the liveness check runs every 500 ms while a session is
# bound: about 40 turns in 10 s when they do not coincide, plus the second `stats`'s own.
idle_seconds=10
most_turns=50

start_vchan_guest
home=/local/domain/$domid/data/grantsvc
step "stats, then $idle_seconds s idle with $home watched, then stats, on one cmd session"
(echo stats; sleep 3; sleep "$idle_seconds"; echo stats; sleep 2) |
    timeout 120 vchan-socket-proxy -m server "$domid" "$base/cmd" - >"$LAB_OUT/idle-stats" 2>"$LAB_OUT/idle-proxy" &
proxy=$!
kill_at_exit "$proxy"
# The first stats and its publication settle within the first 3 s; the watch then covers
# the idle seconds only (xenstore-watch reports the path itself once when it starts).
sleep 3
timeout "$idle_seconds" xenstore-watch "$home" >"$LAB_OUT/idle-watch" 2>&1
wait "$proxy" || fail "the idle cmd session's proxy failed: $(tail -n 2 "$LAB_OUT/idle-proxy")"
mapfile -t turns < <(sed -n 's/^stats .* turns=\([0-9][0-9]*\)$/\1/p' "$LAB_OUT/idle-stats")
[ ${#turns[@]} -ge 2 ] || fail "the idle cmd session did not answer two stats (got: $(tr '\n' ' ' <"$LAB_OUT/idle-stats"))"
idle_turns=$((turns[1] - turns[0]))
writes=$(grep -vc "^$home\$" "$LAB_OUT/idle-watch")
note "$idle_seconds s idle: $idle_turns service-loop turns, $writes xenstore write(s) under $home"
[ "$writes" -eq 0 ] || fail "grantsvc wrote while idle: $(grep -v "^$home\$" "$LAB_OUT/idle-watch" | sort | uniq -c | sort -rn | head -n 5 | tr '\n' ';')"
[ "$idle_turns" -le "$most_turns" ] || fail "$idle_turns service-loop turns in $idle_seconds idle s (at most $most_turns)"
domain_exists || fail "grantsvc stopped"
destroy_guest
pass
