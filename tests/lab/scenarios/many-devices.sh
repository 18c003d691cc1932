#!/bin/bash
# many-devices: 128 grant-share devices at once from one dom0 process, past xenstored's per-domain quotas (its node quota lowered so that about half can be served, its watch quota of 128 as it is): every device is either served completely or refused with an error node naming the quota that ran out, nothing stays mapped once they close, and grantsvc serves a new device after.
# lab-timeout: 600
. "$LAB_LIB"

# DEVICES published together; SERVED: how many the lowered node quota leaves room for.
DEVICES=128
SERVED=64
command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"
create_guest 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log 'grant-share: serving devices under ' 60 "grantsvc serving grant-share devices"
GRANTSVC_DOMID=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
domid=$GRANTSVC_DOMID

# The backend directories the toolstack creates belong to grantsvc and count against its node
# quota: per device the directory, frontend, frontend-id and state (4), and grantsvc's
# mapped-pages written with InitWait: 5 before the device is published, 3 more (pattern,
# digest, answer) when it is served. Room for every device to be prepared, SERVED of them
# served, and 16 nodes to spare (the devices' parent directory, the error nodes of devices
# refused at once past the watch quota).
nodes=$(xenstored_usage "$domid" nodes)
[ -n "$nodes" ] || fail "xenstore-control quota $domid lists no node count for grantsvc"
note "before: grantsvc d$domid owns $nodes node(s) and $(xenstored_usage "$domid" watches) watch(es); xenstored's quotas: nodes $(xenstored_quota nodes), watches $(xenstored_quota watches)"
limit=$((nodes + 5 * DEVICES + 3 * SERVED + 16))
lower_xenstored_quota nodes "$limit"

step "grantsvc-peer crowd --domid $domid --devices $DEVICES --timeout 120"
grantsvc-peer crowd --domid "$domid" --devices "$DEVICES" --timeout 120 >"$LAB_OUT/crowd.log" 2>&1
status=$?
cat "$LAB_OUT/crowd.log"
for figure in prepared published answers refused; do
    grep "crowd: $figure" "$LAB_OUT/crowd.log" | while read -r line; do note "${line#grantsvc-peer: crowd: }"; done
done
[ "$status" = 0 ] || fail "$(tail -n 1 "$LAB_OUT/crowd.log" | sed 's/^grantsvc-peer: FAIL: //')"

# Every refusal names the quota that ran out, and grantsvc's log names the peer with it.
refusals=$(grep 'crowd: refused ' "$LAB_OUT/crowd.log")
[ -n "$refusals" ] || fail "no device was refused at a node quota of $limit: the quota was not reached, refusals were not tested"
unnamed=$(echo "$refusals" | grep -v -e '--entry-nb' -e '--watch-nb')
[ -z "$unnamed" ] || fail "a refusal names no quota: ${unnamed#grantsvc-peer: crowd: }"
logged=$(grep -c -E 'grant-share: peer domain 0 device [0-9]+ closed: .*(--entry-nb|--watch-nb)' "$(console_log)")
note "grantsvc logged $logged refusal(s) naming the device and the quota"
[ "$logged" -gt 0 ] || fail "grantsvc's log names no refused device with its quota"

wait_counter mapped-pages eq 0 30 || fail "after the devices closed grantsvc still maps $(grantsvc_counter mapped-pages) page(s)"
wait_counter peers eq 0 30 || fail "after the devices closed grantsvc still counts $(grantsvc_counter peers) peer(s)"
pins=$(blk_dom0_pins_by_grantsvc)
[ "$pins" = 0 ] || fail "Xen's grant dump shows $pins of dom0's grants mapped by grantsvc after the devices closed"
note "after: grantsvc d$domid owns $(xenstored_usage "$domid" nodes) node(s) and $(xenstored_usage "$domid" watches) watch(es); nothing mapped (its counters and Xen's grant dump)"

# With the devices gone there is room again: a new device is served (the quota still lowered).
step "grantsvc-peer share --domid $domid --pages 2 --devid 1000"
grantsvc-peer share --domid "$domid" --pages 2 --devid 1000 --timeout 30 >"$LAB_OUT/after.log" 2>&1 ||
    fail "a new device after the crowd: $(tail -n 1 "$LAB_OUT/after.log")"
restore_xenstored_quotas
! log_has 'PANIC|FATAL TRAP' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
