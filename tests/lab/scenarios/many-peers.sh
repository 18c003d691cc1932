#!/bin/bash
# many-peers: 32 grant-share devices and 32 vchan servers published together from one dom0 process (grantsvc-peer crowd): every one served within 3 s of its own publication, then all revoked and nothing left mapped.
# lab-timeout: 300
. "$LAB_LIB"

command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"
start_vchan_guest
expect_log 'grant-share: serving devices under ' 60 "grantsvc serving grant-share devices"

# The crowd's own clock: each peer from its own publication (published 4 at a time while
# answers are already being looked for), its answer seen through a watch.
step "grantsvc-peer crowd --domid $domid --devices 32 --vchans 32 --all-served-within-ms 3000"
grantsvc-peer crowd --domid "$domid" --devices 32 --vchans 32 --vchan-base "$base" \
    --timeout 60 --all-served-within-ms 3000 >"$LAB_OUT/crowd.log" 2>&1
status=$?
cat "$LAB_OUT/crowd.log"
for figure in prepared published answers; do
    line=$(grep -m 1 "crowd: $figure" "$LAB_OUT/crowd.log")
    [ -n "$line" ] && note "${line#grantsvc-peer: crowd: }"
done
stalls=$(grep -c "work found only at a timer's expiry" "$(console_log)" 2>/dev/null)
note "grantsvc's warnings of work found only at a timer's expiry: ${stalls:-0}"
[ "$status" = 0 ] || fail "$(tail -n 1 "$LAB_OUT/crowd.log" | sed 's/^grantsvc-peer: FAIL: //')"

wait_counter mapped-pages eq 0 10 || fail "after the crowd grantsvc still maps $(grantsvc_counter mapped-pages) page(s)"
wait_counter peers eq 0 10 || fail "after the crowd grantsvc still counts $(grantsvc_counter peers) peer(s)"
! log_has 'PANIC|FATAL TRAP' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
