#!/bin/bash
# peer-death: a second grantsvc in share-peer mode grants pages to the grantsvc service, which maps them; `xl destroy` of the peer makes grantsvc unmap them (log, counters at 0), Xen then lets the dead domain go, and grantsvc stays up and serves the next peer.
# lab-timeout: 180
. "$LAB_LIB"

PEER=grantsvc-peer-domu
PAGES=8
command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"

create_guest 'extra="loglevel=info"'
expect_log 'grant-share: serving devices under ' 60 "grantsvc serving grant-share devices"
backend=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
published=/local/domain/$backend/data/grantsvc

create_guest "name=\"$PEER\"" "extra=\"loglevel=info share-peer=$PAGES\""
peer=$(xl domid "$PEER") || fail "no domid for $PEER"
step "grantsvc is d$backend, its peer d$peer"

# The toolstack's part, as xl would do it for a split device: the frontend's directory (owned
# by the peer, readable by the backend), then the backend's (owned by grantsvc, readable by
# the peer), both in state Initialising. Each directory gets its permissions before anything
# is written in it (new nodes inherit them), so neither side ever sees it half made.
frontend_dir=/local/domain/$peer/device/grantsvc-share/0
backend_dir=/local/domain/$backend/backend/grantsvc-share/$peer/0
make_directory() {
    xenstore-write "$1" "" && xenstore-chmod "$1" "n$2" "r$3" || fail "creating $1 for d$2"
}
make_directory "$frontend_dir" "$peer" "$backend"
xenstore-write "$frontend_dir/backend" "$backend_dir" "$frontend_dir/backend-id" "$backend" \
    "$frontend_dir/state" 1 || fail "filling $frontend_dir"
make_directory "$backend_dir" "$backend" "$peer"
xenstore-write "$backend_dir/frontend" "$frontend_dir" "$backend_dir/frontend-id" "$peer" \
    "$backend_dir/state" 1 || fail "filling $backend_dir"
xenstore-ls -p "$frontend_dir" >"$LAB_OUT/toolstack-nodes" 2>&1
xenstore-ls -p "$backend_dir" >>"$LAB_OUT/toolstack-nodes" 2>&1

expect_log "share-peer: backend domain $backend connected: it maps our $PAGES page\(s\); its answer checked" 60 \
    "the peer seeing grantsvc's answer in its pages" "$PEER"
for ((tries = 50; tries > 0; tries--)); do
    [ "$(xenstore-read "$published/mapped-pages" 2>/dev/null)" = "$PAGES" ] && break
    sleep 0.2
done
[ "$(xenstore-read "$backend_dir/state" 2>/dev/null)" = 4 ] || fail "the backend state is '$(xenstore-read "$backend_dir/state" 2>/dev/null)', not 4 (Connected)"
[ "$(xenstore-read "$published/mapped-pages")" = "$PAGES" ] || fail "grantsvc publishes mapped-pages $(xenstore-read "$published/mapped-pages"), expected $PAGES"
log_has "grant-share: peer domain $peer device 0 connected: $PAGES page\(s\) mapped at " || fail "grantsvc did not log the connection"

# Kill the peer with its pages mapped.
step "xl destroy $PEER (d$peer) with $PAGES of its pages mapped by grantsvc"
xl list -v >>"$LAB_OUT/xl-list" 2>&1
xl destroy "$PEER" || fail "xl destroy $PEER failed"
expect_log "grant-share: peer domain $peer device 0: unmapped $PAGES page\(s\) at .*, every unmap status okay" 20 \
    "grantsvc unmapping the dead peer's pages"
expect_log "grant-share: peer domain $peer device 0 closed: (frontend domain died|frontend nodes removed)" 5 \
    "grantsvc closing the dead peer's session"
closed=$(grep -m 1 -E "grant-share: peer domain $peer device 0 closed: " "$(console_log)")
step "grantsvc: ${closed#*] }"
! log_has 'grant-share: .*unmapping .* failed' || fail "an unmap failed"

# Xen keeps a dead domain (a "(null)" zombie) while another domain maps its pages: the peer's
# id disappearing from xl list shows that grantsvc's unmaps really released them.
gone=0
wait_domid_gone "$peer" 20 && gone=1
xl list -v >>"$LAB_OUT/xl-list" 2>&1
[ "$gone" = 1 ] ||
    fail "domain $peer is still listed 20 s after xl destroy: something still holds its pages"

for ((tries = 50; tries > 0; tries--)); do
    [ "$(xenstore-read "$published/mapped-pages" 2>/dev/null)" = 0 ] &&
        [ "$(xenstore-read "$published/peers" 2>/dev/null)" = 0 ] && break
    sleep 0.2
done
xenstore-ls "$published" | tee "$LAB_OUT/published"
[ "$(xenstore-read "$published/mapped-pages")" = 0 ] || fail "grantsvc publishes mapped-pages $(xenstore-read "$published/mapped-pages") after the death, expected 0"
[ "$(xenstore-read "$published/peers")" = 0 ] || fail "grantsvc publishes peers $(xenstore-read "$published/peers") after the death, expected 0"

state=$(domain_field State)
case $state in
"" | *c* | *s*) fail "grantsvc is not running after its peer died (state '$state')" ;;
esac
step "grantsvc-peer share --domid $backend --pages 2 --devid 5 --check-pins"
out=$(grantsvc-peer share --domid "$backend" --pages 2 --devid 5 --timeout 60 --check-pins 2>&1)
echo "$out" | tee -a "$LAB_OUT/peer.log"
echo "$out" | tail -n 1 | grep -q '^grantsvc-peer: share ok: ' || fail "a share after the death: $(echo "$out" | tail -n 1)"
! log_has -i 'panicked|page fault|PANIC|FATAL' || fail "the console log reports a panic or fault"
note "peer d$peer destroyed with $PAGES pages mapped: ${closed#*closed: }; Xen released it; grantsvc serves on"
xl destroy "$PEER" >/dev/null 2>&1 || true
destroy_guest
pass
