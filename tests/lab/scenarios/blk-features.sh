#!/bin/bash
# blk-features: dom0's blkfront reloaded with each of its knobs (feature_persistent 0/1, max_indirect_segments 0/256, max_ring_page_order 0/4, max_queues 1/4) against a grantsvc RAM disk: each setting passes a short data check, and what was negotiated shows in xenstore, in grantsvc's counters and in blkfront's own line; persistent grants left unused for 60 s are unmapped (the counter goes to 0) and the disk still serves.
# lab-timeout: 1000
. "$LAB_LIB"
blk_strict

blk_start_grantsvc
parameters=$(modinfo -F parm xen_blkfront | cut -d: -f1 | tr '\n' ' ')
step "xen_blkfront parameters: $parameters"
for knob in feature_persistent max_indirect_segments max_ring_page_order max_queues; do
    case " $parameters " in
    *" $knob "*) ;;
    *) fail "this dom0 kernel's xen_blkfront has no parameter $knob" ;;
    esac
done
work=$(mktemp -d)
head -c $((8 << 20)) /dev/urandom >"$work/data"
frontend=/local/domain/0/device/vbd/$(blk_devid xvdb)

# unload_blkfront: rmmod xen_blkfront, retried for up to 10 s: after a detach the module can
# stay in use a moment (udev's probe of the disk that went away may still hold it open).
unload_blkfront() {
    local tries
    for ((tries = 50; tries > 0; tries--)); do
        rmmod xen_blkfront 2>/dev/null && return 0
        sleep 0.2
    done
    fail "xen_blkfront is still in use 10 s after the detach: $(grep '^xen_blkfront ' /proc/modules)"
}

# check_setting PERSISTENT INDIRECT ORDER QUEUES
check_setting() {
    local persistent=$1 indirect=$2 order=$3 queues=$4 line node
    step "xen_blkfront feature_persistent=$persistent max_indirect_segments=$indirect max_ring_page_order=$order max_queues=$queues"
    unload_blkfront
    modprobe xen_blkfront feature_persistent="$persistent" max_indirect_segments="$indirect" \
        max_ring_page_order="$order" max_queues="$queues"
    blk_attach xvdb 32M
    dd if="$work/data" of=/dev/xvdb bs=1M oflag=direct status=none
    dd if="$work/data" of=/dev/xvdb bs=4k seek=4096 oflag=direct status=none
    cmp -n $((8 << 20)) "$work/data" /dev/xvdb || fail "1 MiB writes read back wrong with this setting"
    dd if=/dev/xvdb of="$work/back" bs=4k skip=4096 count=2048 iflag=direct status=none
    cmp "$work/data" "$work/back" || fail "4 KiB writes read back wrong with this setting"
    # Negotiated: the frontend's nodes, grantsvc's figures, blkfront's own line.
    node=$(xenstore-read "$frontend/feature-persistent" 2>/dev/null || echo 0)
    [ "$node" = "$persistent" ] || fail "frontend feature-persistent is $node, not $persistent"
    node=$(xenstore-read "$frontend/ring-page-order" 2>/dev/null || echo 0)
    [ "$node" = "$order" ] || fail "frontend ring-page-order is $node, not $order"
    node=$(xenstore-read "$frontend/multi-queue-num-queues" 2>/dev/null || echo 1)
    [ "$node" = 1 ] || fail "frontend asks for $node queues though grantsvc offers 1"
    for ((tries = 25; tries > 0; tries--)); do
        [ "$(blk_counter xvdb ring-pages || echo 0)" = $((1 << order)) ] && break
        sleep 0.2
    done
    node=$(blk_counter xvdb ring-pages)
    [ "$node" = $((1 << order)) ] || fail "grantsvc maps $node ring page(s), not $((1 << order))"
    node=$(blk_counter xvdb persistent-grants)
    if [ "$persistent" = 1 ]; then
        [ "$node" -gt 0 ] || fail "no persistent grant held with feature_persistent=1"
    else
        [ "$node" = 0 ] || fail "$node persistent grants held with feature_persistent=0"
    fi
    line=$(dmesg | grep 'blkfront: xvdb: ' | tail -n 1)
    step "blkfront: ${line#*blkfront: }"
    if [ "$indirect" -gt 0 ]; then
        [[ $line == *"indirect descriptors: enabled"* ]] || fail "blkfront does not use indirect descriptors with max_indirect_segments=$indirect"
    else
        [[ $line == *"indirect descriptors: disabled"* ]] || fail "blkfront uses indirect descriptors with max_indirect_segments=0"
    fi
    if [ "${5:-}" = idle-purge ]; then
        # Linux blkback's rule: persistent grants unused for 60 s are unmapped, the disk stays.
        held=$(blk_counter xvdb persistent-grants)
        step "disk left idle with $held persistent grants held: unmapped within 60 s + slack?"
        for ((tries = 450; tries > 0; tries--)); do
            [ "$(blk_counter xvdb persistent-grants)" = 0 ] && break
            sleep 0.2
        done
        [ "$(blk_counter xvdb persistent-grants)" = 0 ] || fail "$(blk_counter xvdb persistent-grants) persistent grants still held after 90 s idle"
        # Direct reads: through dom0's page cache the data might not reach grantsvc at all.
        dd if=/dev/xvdb of="$work/back" bs=1M count=8 iflag=direct status=none
        cmp "$work/data" "$work/back" || fail "data read back wrong after the idle purge"
        for ((tries = 25; tries > 0; tries--)); do
            [ "$(blk_counter xvdb persistent-grants || echo 0)" -gt 0 ] && break
            sleep 0.2
        done
        again=$(blk_counter xvdb persistent-grants)
        [ "$again" -gt 0 ] || fail "the reads after the idle purge mapped no persistent grant"
        note "idle purge: $held persistent grants unmapped after 60 s unused; the next reads map $again again"
    fi
    note "persistent=$persistent indirect=$indirect order=$order queues=$queues: ok ($(blk_counter xvdb requests) requests, $(blk_counter xvdb persistent-grants) persistent grants, $(blk_counter xvdb ring-pages) ring pages)"
    blk_detach xvdb
}

check_setting 0 0 0 1
check_setting 1 256 4 4 idle-purge
check_setting 1 0 4 1
check_setting 0 256 0 4
blk_check_no_leak "after every setting"
# blkfront back to its defaults, so that a scenario run after this one meets the usual frontend
# (the last setting turned persistent grants off).
unload_blkfront
modprobe xen_blkfront
rm -rf "$work"
! log_has -i 'panicked|page fault' || fail "the console log reports a panic or fault"
pass
