#!/bin/bash
# blk-hostile: a misbehaving blkfront in dom0 (grantsvc-peer blk-hostile, one vbd per case, its own libxl-like nodes) sends each bad request of issue 9, jumps req_prod, rewrites a published slot, storms the event channel and puts garbage in every frontend node → each bad request gets ERROR/EOPNOTSUPP for its id and the ring goes on, or the device ends with a log line naming the frontend and an error node; nothing stays mapped (grantsvc's counters, Xen's grant dump); grantsvc then serves dom0's own blkfront.
# lab-timeout: 900
. "$LAB_LIB"

blk_start_grantsvc 'on_poweroff="preserve"' 'on_crash="preserve"'
wait_counter faults eq 0 20 || fail "grantsvc's faults counter is not published as 0"
# The tool is the frontend of its devices: dom0's own blkfront would bind them too.
modprobe -r xen_blkfront || fail "modprobe -r xen_blkfront failed"
[ ! -d /sys/module/xen_blkfront ] || fail "xen_blkfront is still loaded"

step "grantsvc-peer blk-hostile --domid $GRANTSVC_DOMID --check-pins"
timeout 780 grantsvc-peer blk-hostile --domid "$GRANTSVC_DOMID" --check-pins --timeout 20 --devid-base 51900 \
    >"$LAB_OUT/blk-hostile" 2>&1
status=$?
cat "$LAB_OUT/blk-hostile"
[ "$status" -eq 0 ] || fail "blk-hostile: $(tail -n 1 "$LAB_OUT/blk-hostile")"

# Every device the tool ended must be named in grantsvc's log with its frontend.
ended=0
while read -r case devid; do
    grep -qE "blkif: .*(peer|frontend) domain 0 vbd $devid: " "$(console_log)" ||
        fail "$case: no log line naming domain 0's vbd $devid"
    ended=$((ended + 1))
done < <(sed -nE 's/^grantsvc-peer: case (producer-jump|node-[a-z0-9-]+) on vbd ([0-9]+): ok: .*/\1 \2/p' \
    "$LAB_OUT/blk-hostile")
[ "$ended" -ge 18 ] || fail "only $ended device-ending cases reported (producer-jump and 17 node cases)"
note "$(grep -c ': ok: ' "$LAB_OUT/blk-hostile") cases ok, $ended of them ended their device with a log line naming domain 0's vbd"
note "$(sed -nE 's/^grantsvc-peer: case rewritten on vbd [0-9]+: ok: ([^;]*);.*/rewritten: \1/p' "$LAB_OUT/blk-hostile")"
note "$(sed -nE 's/^grantsvc-peer: case event-storm on vbd [0-9]+: ok: ([^;]*);.*/event-storm: \1/p' "$LAB_OUT/blk-hostile")"
wait_counter mapped-pages eq 0 10 || fail "grantsvc still maps pages after the hostile devices"
wait_counter peers eq 0 10 || fail "grantsvc still counts a peer after the hostile devices"
domain_exists || fail "grantsvc stopped during the hostile cases"
for devid in $(sed -nE 's/^grantsvc-peer: case [a-z0-9-]+ on vbd ([0-9]+):.*/\1/p' "$LAB_OUT/blk-hostile"); do
    [ -z "$(xenstore-list "/local/domain/$GRANTSVC_DOMID/backend/vbd/0/$devid" 2>/dev/null)" ] ||
        fail "backend directory of vbd $devid left behind"
done

# Then a real frontend: dom0's blkfront on a fresh disk, data written and read back.
modprobe xen_blkfront || fail "modprobe xen_blkfront failed"
blk_attach xvdb 16M
head -c $((4 << 20)) /dev/urandom >/tmp/blk-hostile.data
dd if=/tmp/blk-hostile.data of=/dev/xvdb bs=64k oflag=direct status=none || fail "writing /dev/xvdb failed"
cmp <(dd if=/dev/xvdb bs=64k count=64 iflag=direct status=none) /tmp/blk-hostile.data ||
    fail "/dev/xvdb read back different after the hostile devices"
blk_detach xvdb
note "then dom0's blkfront: 4 MiB written and read back identical on a new device"
wait_counter mapped-pages eq 0 10 || fail "pages still mapped after the good device left"
! log_has -i 'panicked|page fault|FATAL TRAP' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
