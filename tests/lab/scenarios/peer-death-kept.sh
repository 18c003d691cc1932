#!/bin/bash
# peer-death-kept: grantsvc, not admitted to @releaseDomain, maps a peer's pages; the peer is destroyed by the domain-destroy hypercall alone, so its frontend nodes stay in xenstore and no watch fires: grantsvc notices through the session's event channel, unmaps within 2 s, Xen lets the dead domain go, and grantsvc serves on.
# lab-timeout: 180
. "$LAB_LIB"

PEER=grantsvc-peer-domu
PAGES=8
command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"

# What a host that skipped the @releaseDomain step gives grantsvc: no death events at all.
LAB_NO_RELEASE_WATCH=1 create_guest 'extra="loglevel=info"'
expect_log 'grant-share: serving devices under ' 60 "grantsvc serving grant-share devices"
backend=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
published=/local/domain/$backend/data/grantsvc

# No xl daemon waits for the peer's death (-e): nothing cleans its nodes up after the hypercall.
LAB_XL_CREATE_FLAGS=-e create_guest "name=\"$PEER\"" "extra=\"loglevel=info share-peer=$PAGES\""
peer=$(xl domid "$PEER") || fail "no domid for $PEER"
step "grantsvc is d$backend, its peer d$peer"

# The toolstack's part, as in peer-death, except that dom0 owns every frontend node: xenstored
# removes the nodes a domain owns when it dies (XSA-322), and these must stay. The peer's
# device/ directory (libxl made the peer its owner) goes to dom0 with the peer allowed to write,
# and every node the peer will write exists before it does (a node takes its creator as owner).
frontend_dir=/local/domain/$peer/device/grantsvc-share/0
backend_dir=/local/domain/$backend/backend/grantsvc-share/$peer/0
xenstore-chmod -r "/local/domain/$peer/device" n0 "b$peer" || fail "giving d$peer's device/ to dom0"
xenstore-write "$frontend_dir" "" && xenstore-chmod "$frontend_dir" n0 "b$peer" "r$backend" ||
    fail "creating $frontend_dir"
for node in nr-pages refs event-channel pattern-seed writable; do
    xenstore-write "$frontend_dir/$node" "" || fail "creating $frontend_dir/$node"
done
xenstore-write "$frontend_dir/backend" "$backend_dir" "$frontend_dir/backend-id" "$backend" \
    "$frontend_dir/state" 1 || fail "filling $frontend_dir"
xenstore-ls -p "$frontend_dir" >"$LAB_OUT/frontend-nodes" 2>&1
xenstore-write "$backend_dir" "" && xenstore-chmod "$backend_dir" "n$backend" "r$peer" ||
    fail "creating $backend_dir"
xenstore-write "$backend_dir/frontend" "$frontend_dir" "$backend_dir/frontend-id" "$peer" \
    "$backend_dir/state" 1 || fail "filling $backend_dir"

expect_log "share-peer: backend domain $backend connected: it maps our $PAGES page\(s\); its answer checked" 60 \
    "the peer seeing grantsvc's answer in its pages" "$PEER"
wait_counter mapped-pages eq "$PAGES" 10 || fail "grantsvc publishes mapped-pages $(grantsvc_counter mapped-pages), expected $PAGES"

step "grantsvc-peer destroy-domain --domid $peer (the hypercall alone) with $PAGES of its pages mapped"
killed_at=$(date +%s.%N)
out=$(grantsvc-peer destroy-domain --domid "$peer" 2>&1)
echo "$out"
echo "$out" | tail -n 1 | grep -q '^grantsvc-peer: destroy-domain ok: ' || fail "destroy-domain: $(echo "$out" | tail -n 1)"
expect_log "grant-share: peer domain $peer device 0: unmapped $PAGES page\(s\) at .*, every unmap status okay" 2 \
    "grantsvc unmapping the dead peer's pages within 2 s"
unmapped_at=$(date +%s.%N)
# The case under test: the dead peer's nodes were all still there when grantsvc let go.
xenstore-read "$frontend_dir/state" >/dev/null 2>&1 || fail "the frontend nodes are gone: this is not the kept-nodes case"
closed=$(grep -m 1 -E "grant-share: peer domain $peer device 0 closed: " "$(console_log)") ||
    fail "grantsvc did not log why it closed the session"
step "grantsvc: ${closed#*] }"
! log_has 'grant-share: .*unmapping .* failed' || fail "an unmap failed"

# With nothing of it mapped any more, Xen frees the dead domain.
gone=0
wait_domid_gone "$peer" 20 && gone=1
xl list -v >>"$LAB_OUT/xl-list" 2>&1
[ "$gone" = 1 ] ||
    fail "domain $peer is still listed 20 s after its destruction: something still holds its pages"
wait_counter mapped-pages eq 0 10 || fail "grantsvc publishes mapped-pages $(grantsvc_counter mapped-pages) after the death, expected 0"

state=$(domain_field State)
case $state in
"" | *c* | *s*) fail "grantsvc is not running after its peer died (state '$state')" ;;
esac
xenstore-rm "/local/domain/$peer" 2>/dev/null || true
step "grantsvc-peer share --domid $backend --pages 2 --devid 5"
out=$(grantsvc-peer share --domid "$backend" --pages 2 --devid 5 --timeout 60 2>&1)
echo "$out" | tee -a "$LAB_OUT/peer.log"
echo "$out" | tail -n 1 | grep -q '^grantsvc-peer: share ok: ' || fail "a share after the death: $(echo "$out" | tail -n 1)"
! log_has -i 'panicked|page fault|PANIC|FATAL' || fail "the console log reports a panic or fault"
note "peer d$peer destroyed by hypercall with its nodes kept and no @releaseDomain: unmapped after $(awk -v from="$killed_at" -v to="$unmapped_at" 'BEGIN { printf "%.1f", to - from }') s (${closed#*closed: })"
destroy_guest
pass
