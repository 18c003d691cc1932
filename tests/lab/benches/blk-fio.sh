#!/bin/bash
# blk-fio: issue 9's block benchmark in one boot: dom0's blkfront on a grantsvc ram: disk against dom0's blkfront on Linux blkback over a brd RAM disk of the same size; fio 4 KiB and 64 KiB, randread and randwrite, iodepth 1 and 32, persistent grants on and off (xen_blkfront's feature_persistent, reloaded between); IOPS and MB/s per row with the grantsvc/Linux ratio, GOAL blk-<size>-<rw>-qd<N>-<persistent|mapped> lines, and per request the notifications dom0 received and grantsvc's map/unmap operations.
# lab-timeout: 1500
# Runs under `make bench` (alone: `make bench BENCHES=blk-fio`) with lib.sh's table and goal,
# defined here too for a lib.sh without them. Each row is two fio runs of 1 + 5 s plus counter
# reads: about 20 s a row on a quiet machine, 45 s seen with the 2 cores at load 20.
. "$LAB_LIB"

type table >/dev/null 2>&1 || table() { printf '%s\n' "$@" | tee -a "$LAB_OUT/table"; }
type goal >/dev/null 2>&1 || goal() {
    step "GOAL $1 $2 $3"
    echo "GOAL $1 $2 $3" >>"$LAB_OUT/goals"
}

DISK_MIB=${BLK_FIO_DISK_MIB:-64}
RUNTIME=${BLK_FIO_RUNTIME:-5}
GRANTSVC_VDEV=xvdb
LINUX_VDEV=xvdc

blk_start_grantsvc 'on_poweroff="preserve"' 'on_crash="preserve"'
modprobe xen-blkback || fail "modprobe xen-blkback failed"
modprobe brd rd_nr=1 rd_size=$((DISK_MIB * 1024)) || fail "modprobe brd failed"
[ "$(blockdev --getsize64 /dev/ram0)" = $((DISK_MIB << 20)) ] || fail "/dev/ram0 is not $DISK_MIB MiB"
command -v fio >/dev/null || fail "fio is not in the image"

# sum_irqs NAME: the count of every interrupt line of /proc/interrupts named NAME, all CPUs.
sum_irqs() {
    awk -v name="$1" '$NF == name { for (i = 2; i < NF; i++) if ($i ~ /^[0-9]+$/) total += $i } END { print total + 0 }' /proc/interrupts
}

# requests_of VDEV: requests the backend of VDEV has served (grantsvc's per-device counter;
# Linux blkback's statistics in sysfs).
requests_of() {
    local devid
    devid=$(blk_devid "$1")
    if [ "$1" = "$GRANTSVC_VDEV" ]; then
        blk_counter "$1" requests
    else
        local stats=/sys/bus/xen-backend/devices/vbd-0-$devid/statistics
        echo $(($(cat "$stats/rd_req") + $(cat "$stats/wr_req") + $(cat "$stats/f_req") + $(cat "$stats/ds_req")))
    fi
}

# The hotplug script for the brd disk: what Xen's block script does for a plain block device
# (blkback starts once it finds physical-device), in three commands instead of its hundreds of
# forks, which under TCG on a loaded machine outlasted xl's 10 s wait for the backend. Only the
# attach is concerned; the I/O path is Linux blkback's own.
BLOCK_SCRIPT=/tmp/blk-fio-block-script
cat >"$BLOCK_SCRIPT" <<'SCRIPT'
#!/bin/sh
[ "$1" = add ] || exit 0
device=$(xenstore-read "$XENBUS_PATH/params") || exit 1
xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c '%t:%T' "$device")" \
    "$XENBUS_PATH/physical-device-path" "$device" "$XENBUS_PATH/hotplug-status" connected
SCRIPT
chmod +x "$BLOCK_SCRIPT"

attach_both() {
    blk_attach "$GRANTSVC_VDEV" "${DISK_MIB}M"
    step "xl block-attach 0 'format=raw,vdev=$LINUX_VDEV,access=w,script=$BLOCK_SCRIPT,target=/dev/ram0'"
    timeout 120 xl block-attach 0 "format=raw,vdev=$LINUX_VDEV,access=w,script=$BLOCK_SCRIPT,target=/dev/ram0" ||
        fail "xl block-attach of /dev/ram0 failed (status $?)"
    local tries
    for ((tries = 100; tries > 0; tries--)); do
        [ -b "/dev/$LINUX_VDEV" ] && break
        sleep 0.2
    done
    [ -b "/dev/$LINUX_VDEV" ] || fail "/dev/$LINUX_VDEV did not appear"
    for vdev in "$GRANTSVC_VDEV" "$LINUX_VDEV"; do
        [ "$(blockdev --getsize64 "/dev/$vdev")" = $((DISK_MIB << 20)) ] || fail "/dev/$vdev is not $DISK_MIB MiB"
    done
}

detach_both() {
    blk_detach "$GRANTSVC_VDEV"
    timeout 120 xl block-detach 0 "$LINUX_VDEV" || fail "xl block-detach of $LINUX_VDEV failed"
}

# negotiated VDEV: the feature-persistent both ends wrote, as "frontend/backend".
negotiated() {
    local devid front back
    devid=$(blk_devid "$1")
    front=$(xenstore-read "/local/domain/0/device/vbd/$devid/feature-persistent" 2>/dev/null || echo -)
    back=$(xenstore-read "$(xenstore-read "/local/domain/0/device/vbd/$devid/backend")/feature-persistent" 2>/dev/null || echo -)
    echo "$front/$back"
}

# grantsvc_profile VDEV: "WAKEUPS NOTIFICATIONS SERVE_US": the times grantsvc served the
# device's ring, the events it sent back, and its microseconds spent serving rings (all devices).
grantsvc_profile() {
    echo "$(blk_counter "$1" wakeups || echo 0) $(blk_counter "$1" notifications || echo 0) $(grantsvc_counter vbd/serve-us || echo 0)"
}

# run_fio VDEV BS RW DEPTH: prints "IOPS KIB_PER_S REQUESTS NOTIFICATIONS" of one fio run, and for
# grantsvc's disk also "WAKEUPS SENT SERVE_US" over it.
run_fio() {
    local vdev=$1 bs=$2 rw=$3 depth=$4 terse iops kib requests_before requests_after irqs_before irqs_after field
    local profile_before=(0 0 0) profile_after=(0 0 0)
    requests_before=$(requests_of "$vdev")
    [ "$vdev" != "$GRANTSVC_VDEV" ] || read -ra profile_before <<<"$(grantsvc_profile "$vdev")"
    irqs_before=$(sum_irqs blkif)
    terse=$(fio --name=blk --filename="/dev/$vdev" --ioengine=libaio --direct=1 --bs="$bs" \
        --rw="$rw" --iodepth="$depth" --numjobs=1 --time_based --runtime="$RUNTIME" --ramp_time=1 \
        --size=$((DISK_MIB << 20)) --randrepeat=0 --norandommap --output-format=terse --terse-version=3 \
        2>"$LAB_OUT/fio-$vdev-$bs-$rw-$depth.err") || fail "fio on $vdev $bs $rw qd$depth: $(tail -n 1 "$LAB_OUT/fio-$vdev-$bs-$rw-$depth.err")"
    irqs_after=$(sum_irqs blkif)
    # grantsvc publishes its counters at most once a second.
    [ "$vdev" != "$GRANTSVC_VDEV" ] || sleep 2
    requests_after=$(requests_of "$vdev")
    [ "$vdev" != "$GRANTSVC_VDEV" ] || read -ra profile_after <<<"$(grantsvc_profile "$vdev")"
    echo "$terse" >>"$LAB_OUT/fio-terse"
    # Terse v3: read bandwidth (KiB/s) and IOPS are fields 7 and 8, write's 48 and 49.
    case $rw in
    randread) field=7 ;;
    *) field=48 ;;
    esac
    kib=$(echo "$terse" | cut -d';' -f"$field")
    iops=$(echo "$terse" | cut -d';' -f$((field + 1)))
    echo "$iops $kib $((requests_after - requests_before)) $((irqs_after - irqs_before))" \
        "$((profile_after[0] - profile_before[0])) $((profile_after[1] - profile_before[1]))" \
        "$((profile_after[2] - profile_before[2]))"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mbs() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib * 1024 / 1e6 }'; }

rows=()
goals=()
for mode in persistent mapped; do
    persistent=1
    [ "$mode" = mapped ] && persistent=0
    step "xen_blkfront feature_persistent=$persistent"
    modprobe -r xen_blkfront || fail "modprobe -r xen_blkfront failed"
    modprobe xen_blkfront feature_persistent=$persistent || fail "modprobe xen_blkfront feature_persistent=$persistent failed"
    attach_both
    grantsvc_features=$(negotiated "$GRANTSVC_VDEV")
    linux_features=$(negotiated "$LINUX_VDEV")
    step "feature-persistent frontend/backend: grantsvc $grantsvc_features, Linux $linux_features"
    # Both disks written whole first: a RAM disk's unwritten pages read as zeros without work.
    for vdev in "$GRANTSVC_VDEV" "$LINUX_VDEV"; do
        dd if=/dev/zero bs=1M count="$DISK_MIB" status=none | tr '\0' '\245' |
            dd of="/dev/$vdev" bs=1M oflag=direct iflag=fullblock status=none || fail "filling /dev/$vdev failed"
    done
    for bs in 4k 64k; do
        for rw in randread randwrite; do
            for depth in 1 32; do
                maps_start=$(grantsvc_counter maps)
                read -r g_iops g_kib g_requests g_irqs g_wakeups g_sent g_serve_us <<<"$(run_fio "$GRANTSVC_VDEV" "$bs" "$rw" "$depth")"
                maps_end=$(grantsvc_counter maps)
                read -r l_iops l_kib l_requests l_irqs <<<"$(run_fio "$LINUX_VDEV" "$bs" "$rw" "$depth")"
                name="blk-$bs-$rw-qd$depth-$mode"
                r=$(ratio "$g_iops" "$l_iops")
                # Busy: grantsvc's time serving over the run's 1 + RUNTIME s (ramp included).
                busy=$(awk -v us="$g_serve_us" -v s=$((RUNTIME + 1)) 'BEGIN { printf "%.0f%%", us / s / 1e4 }')
                rows+=("$(printf '%-4s %-9s %4s %-10s | %8s %8s %6s %6s %6s %6s %5s | %8s %8s %6s | %5s' \
                    "$bs" "$rw" "qd$depth" "$mode" "$g_iops" "$(mbs "$g_kib")" "$(per "$g_irqs" "$g_requests")" \
                    "$(per $((maps_end - maps_start)) "$g_requests")" "$(per "$g_requests" "$g_wakeups")" \
                    "$(per "$g_sent" "$g_requests")" "$busy" \
                    "$l_iops" "$(mbs "$l_kib")" "$(per "$l_irqs" "$l_requests")" "$r")")
                goals+=("$name $r")
                step "${rows[-1]}"
            done
        done
    done
    detach_both
done

table "blk-fio: $DISK_MIB MiB RAM disks, fio libaio direct=1, ${RUNTIME} s per row after 1 s ramp; grantsvc's ram: disk vs Linux blkback on brd, both through dom0's xen-blkfront" \
    "irq/req: blkif interrupts dom0 took per request (backend-to-frontend notifications); maps/req: grant pages grantsvc mapped per request (0 once persistent grants are warm); req/wake: requests grantsvc served per wake-up; ntf/req: events grantsvc sent per request; busy: grantsvc's time serving rings over the run" \
    "size rw        qd  mode       | gsvc IOPS     MB/s irq/req maps/r req/wk ntf/r  busy | lnx IOPS     MB/s irq/req | ratio" \
    "${rows[@]}"
for entry in "${goals[@]}"; do
    goal "${entry% *}" "${entry#* }" '>=1.2'
done
grep -E 'blkif' /proc/interrupts >"$LAB_OUT/interrupts" || true
wait_counter mapped-pages eq 0 10 || fail "grantsvc still maps pages after the bench's detaches"
pass
