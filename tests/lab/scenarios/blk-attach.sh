#!/bin/bash
# blk-attach: xl block-attach of a grantsvc RAM disk to dom0 returns 0, /dev/xvdb is exactly 64 MiB, xl block-list shows it, the negotiated nodes are in xenstore; a disk grantsvc's memory cannot hold is refused with an error node; detach leaves no backend node.
# lab-timeout: 240
. "$LAB_LIB"
blk_strict

blk_start_grantsvc
started=$(date +%s%N)
blk_attach xvdb 64M
step "attached in $((($(date +%s%N) - started) / 1000000)) ms"
bytes=$(blockdev --getsize64 /dev/xvdb)
[ "$bytes" = $((64 << 20)) ] || fail "/dev/xvdb has $bytes bytes, not 64 MiB ($((64 << 20)))"
step "/dev/xvdb: $bytes bytes"
xl block-list 0 | tee "$LAB_OUT/block-list"
xl block-list 0 | awk -v be="$GRANTSVC_DOMID" 'NR > 1 && $1 == 51728 && $2 == be && $4 == 4 { found = 1 } END { exit !found }' ||
    fail "xl block-list 0 does not show vdev 51728 on backend $GRANTSVC_DOMID in state 4"
backend=$(blk_backend_dir xvdb)
xenstore-ls -f "$backend" | tee "$LAB_OUT/backend-nodes"
[ "$(xenstore-read "$backend/sectors")" = $((64 << 11)) ] || fail "backend sectors is not $((64 << 11))"
[ "$(xenstore-read "$backend/params")" = ram:64M ] || fail "params is not ram:64M"
for node in feature-max-indirect-segments max-ring-page-order multi-queue-max-queues feature-flush-cache feature-discard feature-persistent; do
    xenstore-read "$backend/$node" >/dev/null || fail "backend node $node missing"
done
dd if=/dev/xvdb of=/dev/null bs=1M count=4 iflag=direct status=none || fail "reading /dev/xvdb failed"

# A disk larger than grantsvc's memory: refused with an error node and a log line; xl fails
# (after its 10 s wait for InitWait) and leaves nothing behind.
step "xl block-attach of ram:1G (more than grantsvc's memory)"
if timeout 40 xl block-attach 0 "backend=$LAB_GUEST,vdev=xvdc,access=rw,target=ram:1G"; then
    fail "xl block-attach of a 1 GiB RAM disk succeeded in a 160 MiB grantsvc"
fi
expect_log 'blkif: frontend domain 0 vbd 51744: refused: a RAM disk of 1073741824 bytes does not fit' 10 "the refusal line of ram:1G"
[ -n "$(xenstore-read "$(blk_backend_dir xvdc)/error" 2>/dev/null || true)" ] ||
    xl block-list 0 | awk 'NR > 1 && $1 == 51744 { found = 1 } END { exit found }' ||
    fail "the refused xvdc is listed without an error node"
# Whatever xl left of the refused device goes with a detach (online=0 on a closed device).
timeout 30 xl block-detach 0 xvdc >/dev/null 2>&1 || true
for ((tries = 50; tries > 0; tries--)); do
    ! xenstore-read "$(blk_backend_dir xvdc)/state" >/dev/null 2>&1 && break
    sleep 0.2
done
! xenstore-read "$(blk_backend_dir xvdc)/state" >/dev/null 2>&1 || fail "the refused xvdc's backend directory stayed"

started=$(date +%s%N)
blk_detach xvdb
step "detached in $((($(date +%s%N) - started) / 1000000)) ms"
xl block-list 0 | awk 'NR > 1 && $1 == 51728 { found = 1 } END { exit found }' || fail "xl block-list still shows 51728"
wait_counter peers eq 0 10 || fail "grantsvc still counts a peer after the detach"
wait_counter mapped-pages eq 0 10 || fail "grantsvc still maps pages after the detach"
! log_has -i 'panicked|page fault' || fail "the console log reports a panic or fault"
pass
