#!/bin/bash
# idle: with one vchan session connected and nothing to do, grantsvc writes nothing to xenstore for 10 s (no publication causes the next) and its service loop turns only for its half-second liveness check (which also polls the vchan sessions): at most 3 turns a second, counted by stats on the idle session at the start and the end of the 10 s.
# lab-timeout: 200
. "$LAB_LIB"

# The one timer: every 500 ms while a session is bound, the liveness check, which also polls
# the connected vchan sessions (a server killed without a signal is found so): 2 turns a
# second, plus the few of the `stats` that opens the window. 3 turns a second is the bound
# (a second periodic timer, as the vchan poll once was, makes about 4). The first `stats`
# connects the session and publishes what that changed; the window opens settle_seconds
# later, with the second.
settle_seconds=3
idle_seconds=10
most_turns=$((3 * idle_seconds))

start_vchan_guest
home=/local/domain/$domid/data/grantsvc
step "stats, $settle_seconds s, stats, then $idle_seconds s idle with $home watched, then stats, on one cmd session"
(echo stats; sleep "$settle_seconds"; echo stats; sleep "$idle_seconds"; echo stats; sleep 2) |
    timeout 120 vchan-socket-proxy -m server "$domid" "$base/cmd" - >"$LAB_OUT/idle-stats" 2>"$LAB_OUT/idle-proxy" &
proxy=$!
kill_at_exit "$proxy"
# The watch covers the idle seconds (xenstore-watch reports the path itself once when it
# starts): it opens just after the second stats, so a publication that stats caused is seen.
sleep "$settle_seconds"
timeout "$idle_seconds" xenstore-watch "$home" >"$LAB_OUT/idle-watch" 2>&1
wait "$proxy" || fail "the idle cmd session's proxy failed: $(tail -n 2 "$LAB_OUT/idle-proxy")"
mapfile -t turns < <(sed -n 's/^stats .* turns=\([0-9][0-9]*\)$/\1/p' "$LAB_OUT/idle-stats")
[ ${#turns[@]} -ge 3 ] || fail "the idle cmd session did not answer three stats (got: $(tr '\n' ' ' <"$LAB_OUT/idle-stats"))"
idle_turns=$((turns[2] - turns[1]))
writes=$(grep -vc "^$home\$" "$LAB_OUT/idle-watch")
note "$idle_seconds s idle: $idle_turns service-loop turns, $writes xenstore write(s) under $home"
[ "$writes" -eq 0 ] || fail "grantsvc wrote while idle: $(grep -v "^$home\$" "$LAB_OUT/idle-watch" | sort | uniq -c | sort -rn | head -n 5 | tr '\n' ';')"
[ "$idle_turns" -le "$most_turns" ] || fail "$idle_turns service-loop turns in $idle_seconds idle s (at most $most_turns)"
domain_exists || fail "grantsvc stopped"
destroy_guest
pass
