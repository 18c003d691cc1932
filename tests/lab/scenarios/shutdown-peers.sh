#!/bin/bash
# shutdown-peers: `xl shutdown` while a grant-share peer is connected: grantsvc unmaps the peer's pages, closes its session (backend state Closed, mapped-pages 0), publishes nothing mapped, then powers off.
# lab-timeout: 150
. "$LAB_LIB"

command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"
create_guest 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log 'grant-share: serving devices under ' 60 "grantsvc serving grant-share devices"
domid=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
published=/local/domain/$domid/data/grantsvc
backend_dir=/local/domain/$domid/backend/grantsvc-share/0/0

# A peer that stays connected (it holds its pages granted for a minute).
step "grantsvc-peer share --domid $domid --pages 4 --devid 0 --hold-secs 60 (in the background)"
grantsvc-peer share --domid "$domid" --pages 4 --devid 0 --hold-secs 60 --timeout 60 \
    >"$LAB_OUT/peer.log" 2>&1 &
peer_pid=$!
for ((tries = 150; tries > 0; tries--)); do
    [ "$(xenstore-read "$backend_dir/state" 2>/dev/null)" = 4 ] && break
    sleep 0.2
done
[ "$(xenstore-read "$backend_dir/state" 2>/dev/null)" = 4 ] || fail "the peer's device did not connect within 30 s"
for ((tries = 50; tries > 0; tries--)); do
    [ "$(xenstore-read "$published/mapped-pages" 2>/dev/null)" = 4 ] && break
    sleep 0.2
done
[ "$(xenstore-read "$published/mapped-pages")" = 4 ] || fail "grantsvc publishes mapped-pages $(xenstore-read "$published/mapped-pages"), expected 4"
[ "$(xenstore-read "$published/peers")" = 1 ] || fail "grantsvc publishes peers $(xenstore-read "$published/peers"), expected 1"

step "xl shutdown -w $LAB_GUEST with the peer connected"
timeout 60 xl shutdown -w "$LAB_GUEST" || step "xl shutdown -w returned $?"
expect_shut_down 0 "xl shutdown"
expect_log 'grant-share: peer domain 0 device 0: unmapped 4 page\(s\) at .*, every unmap status okay' 1 "the peer's pages unmapped"
expect_log 'grant-share: peer domain 0 device 0 closed: grantsvc shutting down' 1 "the peer's session closed for the shutdown"
expect_log 'shutdown: 1 peer session\(s\) closed; 0 grant page\(s\) still mapped' 1 "one session closed and nothing mapped"
expect_log '^\[info\] shutdown: poweroff$' 1 "the last line before poweroff"
# What the peer was told, and what grantsvc published last.
[ "$(xenstore-read "$backend_dir/state" 2>/dev/null)" = 6 ] || fail "the backend state is '$(xenstore-read "$backend_dir/state" 2>/dev/null)', not 6 (Closed)"
[ "$(xenstore-read "$backend_dir/mapped-pages" 2>/dev/null)" = 0 ] || fail "the backend's mapped-pages is not 0"
[ "$(xenstore-read "$published/state" 2>/dev/null)" = stopped ] || fail "$published/state is not 'stopped'"
[ "$(xenstore-read "$published/mapped-pages" 2>/dev/null)" = 0 ] || fail "$published/mapped-pages is not 0 at the end"
! log_has 'PANIC|FATAL|unmapping .* failed' || fail "the console log reports a panic, a fatal trap or a failed unmap"

# The peer tool is ours: end it (it holds its pages until its hold time is over).
kill "$peer_pid" 2>/dev/null || true
wait "$peer_pid" 2>/dev/null || true
destroy_guest
pass
