#!/bin/bash
# peer-grants: grantsvc-peer grants pages to grantsvc, which maps them, checks the pattern, answers, and unmaps when the tool revokes; garbage devices are refused cleanly and the service carries on.
# lab-timeout: 240
#
# Kept out of tests/lab/scenarios/ (which the lab runs in full by default) until grantsvc's
# kernel serves grant-share devices (src/share/): move it there then. It follows that
# folder's conventions (lib.sh, pass/fail).
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
for kind in refs-non-numeric refs-count refs-ungranted nr-pages-zero nr-pages-huge \
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
destroy_guest
pass
