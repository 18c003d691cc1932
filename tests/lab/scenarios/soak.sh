#!/bin/bash
# soak: SOAK_CYCLES (default 1000) connect/map/revoke cycles of a grant-share device against one grantsvc, timed per cycle in dom0: the slowest cycle stays under 1 s, and the published counters (mapped-pages, peers, heap in use) return to their baseline.
# lab-timeout: 600
. "$LAB_LIB"

# SOAK_CYCLES: how many cycles (1000 or more; more only on a quiet machine).
SOAK_CYCLES=1000
cycles=$SOAK_CYCLES
[ "$cycles" -ge 1000 ] 2>/dev/null || fail "SOAK_CYCLES is '$cycles'; the soak proves nothing below 1000 cycles"
command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"
create_guest 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log 'grant-share: serving devices under ' 60 "grantsvc serving grant-share devices"
GRANTSVC_DOMID=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
domid=$GRANTSVC_DOMID
published=/local/domain/$domid/data/grantsvc

# counters: the published counters on one line, for the log and the failure lines.
counters() { xenstore-ls "$published" 2>/dev/null | tr -s ' \n' ' '; }

# A few cycles first, so that what grantsvc allocates once (tables, buffers) is in the baseline.
step "warm-up: grantsvc-peer soak --domid $domid --cycles 20"
grantsvc-peer soak --domid "$domid" --cycles 20 --max-cycle-ms 60000 >"$LAB_OUT/warm-up.log" 2>&1 ||
    fail "warm-up cycles failed: $(tail -n 1 "$LAB_OUT/warm-up.log")"
wait_counter mapped-pages eq 0 10 || fail "after the warm-up grantsvc publishes $(counters)"
wait_counter peers eq 0 10 || fail "after the warm-up grantsvc publishes $(counters)"
# Counters are republished at most once a second: wait for the last change to show.
sleep 2
heap_name=
for name in heap-in-use heap-used heap; do
    [ -n "$(grantsvc_counter "$name")" ] && heap_name=$name && break
done
baseline_heap=${heap_name:+$(grantsvc_counter "$heap_name")}
step "baseline: $(counters)"
note "baseline after 20 warm-up cycles: $(counters)"
[ -n "$heap_name" ] || note "grantsvc publishes no heap figure: heap growth is not checked"

step "grantsvc-peer soak --domid $domid --cycles $cycles --max-cycle-ms 1000"
started=$(date +%s)
grantsvc-peer soak --domid "$domid" --cycles "$cycles" --max-cycle-ms 1000 --show-slowest 5 \
    >"$LAB_OUT/soak.log" 2>&1
status=$?
step "soak ended with status $status after $(($(date +%s) - started)) s"
cat "$LAB_OUT/soak.log"
figures=$(grep -m 1 'soak figures:' "$LAB_OUT/soak.log")
[ -n "$figures" ] && note "${figures#grantsvc-peer: }"
grep 'soak slowest:' "$LAB_OUT/soak.log" | head -n 3 | while read -r line; do note "${line#grantsvc-peer: }"; done
stalls=$(grep -c "work found only at a timer's expiry" "$(console_log)" 2>/dev/null)
note "grantsvc's warnings of work found only at a timer's expiry: ${stalls:-0}"
[ "$status" = 0 ] || fail "$(tail -n 1 "$LAB_OUT/soak.log" | sed 's/^grantsvc-peer: FAIL: //')"

wait_counter mapped-pages eq 0 10 || fail "after $cycles cycles grantsvc publishes $(counters)"
wait_counter peers eq 0 10 || fail "after $cycles cycles grantsvc publishes $(counters)"
if [ -n "$heap_name" ]; then
    # Allowed to settle (republished at most once a second), never to stay above the baseline.
    wait_counter "$heap_name" le "$baseline_heap" 10 ||
        fail "$heap_name is $(grantsvc_counter "$heap_name") after $cycles cycles, baseline $baseline_heap ($(counters))"
    note "$heap_name $(grantsvc_counter "$heap_name") after $cycles cycles (baseline $baseline_heap), heap-peak $(grantsvc_counter heap-peak)"
fi
note "after $cycles cycles: $(counters)"
! log_has 'PANIC|FATAL TRAP' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
