#!/bin/bash
# peer-grants: grantsvc-peer grants pages to grantsvc, which maps them, checks the pattern, answers, and unmaps when the tool revokes; garbage devices are refused cleanly and the service carries on.
# lab-timeout: 240
. "$LAB_LIB"

command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"
create_guest 'extra="loglevel=info"'
domid=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
step "grantsvc is d$domid"

# run_peer WHAT ARGS...: runs the tool, keeps its output, fails the scenario unless its verdict
# line says ok.
run_peer() {
    local what=$1 out
    shift
    step "grantsvc-peer $*"
    out=$(grantsvc-peer "$@" 2>&1)
    echo "$out" | tee -a "$LAB_OUT/peer.log"
    echo "$out" | tail -n 1 | grep -q '^grantsvc-peer: share ok: ' ||
        fail "$what: $(echo "$out" | tail -n 1)"
}

# Xen's console ring holds a grant-table dump of a few dozen entries: pin checks stay small.
run_peer "8 writable pages" share --domid "$domid" --pages 8 --devid 0 --timeout 60 --check-pins
run_peer "4 read-only pages" share --domid "$domid" --pages 4 --devid 1 --readonly --timeout 60 --check-pins
run_peer "256 pages" share --domid "$domid" --pages 256 --devid 2 --timeout 60
for kind in refs-non-numeric refs-leading-zero refs-count refs-ungranted nr-pages-zero nr-pages-huge \
    nr-pages-non-numeric port-zero port-unbound state-garbage pattern; do
    run_peer "garbage $kind" share --domid "$domid" --pages 4 --devid 3 --garbage "$kind" \
        --timeout 60 --check-pins
done
# The service is still up and still serves after all of that.
state=$(domain_field State)
case $state in
"" | *c* | *s*) fail "grantsvc is not running after the garbage devices (state '$state')" ;;
esac
run_peer "a share after the garbage" share --domid "$domid" --pages 2 --devid 4 --timeout 60 --check-pins
! log_has -i 'panicked|page fault' || fail "the console log reports a panic or fault"

# Every mapped region was unmapped with every status okay, and each garbage device ended with
# a fault line naming the peer.
connected=$(grep -c 'grant-share: peer domain 0 device [0-9]* connected: ' "$(console_log)")
unmapped=$(grep -c 'grant-share: peer domain 0 device [0-9]*: unmapped [0-9]* page(s) at .*, every unmap status okay' "$(console_log)")
faults=$(grep -c 'grant-share: fault: peer domain 0 grantsvc-share device 3: ' "$(console_log)")
step "console: $connected connected, $unmapped unmapped, $faults fault lines"
[ "$connected" = 6 ] || fail "$connected devices connected, expected 6"
# The 6 connected and port-unbound (mapped, then its bind failed).
[ "$unmapped" = 7 ] || fail "$unmapped clean unmaps logged, expected 7"
[ "$faults" = 10 ] || fail "$faults fault lines for the garbage devices, expected 10"
! log_has 'grant-share: .*(unmapping .* failed|internal error)' || fail "an unmap failed or an internal error was logged"

# The published counters: nothing mapped, no session, every map undone, the faults counted.
published=/local/domain/$domid/data/grantsvc
for ((tries = 50; tries > 0; tries--)); do
    [ "$(xenstore-read "$published/peers" 2>/dev/null)" = 0 ] &&
        [ "$(xenstore-read "$published/faults" 2>/dev/null)" = 10 ] && break
    sleep 0.2
done
xenstore-ls "$published" | tee "$LAB_OUT/published"
for counter in peers mapped-regions mapped-pages; do
    [ "$(xenstore-read "$published/$counter")" = 0 ] || fail "$published/$counter is $(xenstore-read "$published/$counter"), expected 0"
done
[ "$(xenstore-read "$published/faults")" = 10 ] || fail "$published/faults is $(xenstore-read "$published/faults"), expected 10"
maps=$(xenstore-read "$published/maps") && unmaps=$(xenstore-read "$published/unmaps") || fail "no maps/unmaps counters"
[ "$maps" -gt 0 ] && [ "$maps" = "$unmaps" ] || fail "maps $maps and unmaps $unmaps: every mapped page must be unmapped"
note "$connected devices served ($maps pages mapped and unmapped), 10 garbage faults ended their sessions"
destroy_guest
pass
