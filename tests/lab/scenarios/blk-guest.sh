#!/bin/bash
# blk-guest: a Linux PV domU (dom0's kernel, a busybox initramfs) boots with disk=['backend=grantsvc,vdev=xvda,access=rw,target=ram:64M'], so frontend, backend and toolstack are three domains; in its init it checks the disk's size, writes random data with O_DIRECT at 4 KiB and 1 MiB requests and reads it back identical, makes an ext4 filesystem (dom0's mke2fs), writes a tree of files, fsck finds it clean, mounts again and verifies every checksum, discards and syncs; its console says PASS; grantsvc's counters show the domU's requests; destroying the domU leaves nothing mapped.
# lab-timeout: 900
. "$LAB_LIB"

blk_start_grantsvc 'on_poweroff="preserve"' 'on_crash="preserve"'
wait_counter mapped-pages eq 0 20 || fail "grantsvc's mapped-pages is not published as 0"
GUEST=blk-guest

# The domU's side of the check. It runs as /scenario-init under busybox's sh; every step
# prints what it did, and the last line is "blk-guest: PASS ..." or "blk-guest: FAIL ...".
init=/tmp/blk-guest-init.sh
{
    echo '#!/bin/sh'
    echo "EXT4_MODULES='$(modprobe --show-depends ext4 | awk '$1 == "insmod" { print $2 }' | tr '\n' ' ')'"
    cat <<'INIT'
fail() { echo "blk-guest: FAIL: $*"; exit 1; }
say() { echo "blk-guest: $*"; }
for module in $EXT4_MODULES; do insmod "$module" 2>/dev/null || grep -q "^${module##*/}" /proc/modules || true; done
grep -qw ext4 /proc/filesystems || fail "no ext4 in the domU kernel after loading $EXT4_MODULES"
tries=150
while [ ! -b /dev/xvda ] && [ $tries -gt 0 ]; do sleep 0.2; tries=$((tries - 1)); done
[ -b /dev/xvda ] || fail "/dev/xvda did not appear within 30 s"
size=$(blockdev --getsize64 /dev/xvda)
[ "$size" = 67108864 ] || fail "/dev/xvda has $size bytes, not 64 MiB"
say "/dev/xvda: $size bytes"

# Raw data, O_DIRECT: 1 MiB in 4 KiB requests at 4 MiB, 8 MiB in 1 MiB requests at 16 MiB.
dd if=/dev/urandom of=/tmp/small bs=4096 count=256 2>/dev/null
dd if=/dev/urandom of=/tmp/large bs=1048576 count=8 2>/dev/null
dd if=/tmp/small of=/dev/xvda bs=4096 seek=1024 oflag=direct conv=fsync 2>/dev/null || fail "4 KiB O_DIRECT writes failed"
dd if=/tmp/large of=/dev/xvda bs=1048576 seek=16 oflag=direct conv=fsync 2>/dev/null || fail "1 MiB O_DIRECT writes failed"
small=$(dd if=/dev/xvda bs=4096 skip=1024 count=256 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
large=$(dd if=/dev/xvda bs=1048576 skip=16 count=8 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$small" = "$(sha256sum </tmp/small | cut -d' ' -f1)" ] || fail "1 MiB written in 4 KiB O_DIRECT requests read back different"
[ "$large" = "$(sha256sum </tmp/large | cut -d' ' -f1)" ] || fail "8 MiB written in 1 MiB O_DIRECT requests read back different"
say "O_DIRECT 4 KiB and 1 MiB requests read back identical (sha256 ${small%${small#????????}}, ${large%${large#????????}})"
blkdiscard -o 16777216 -l 8388608 /dev/xvda || fail "blkdiscard of the 1 MiB-request area failed"
zeros=$(dd if=/dev/xvda bs=1048576 skip=16 count=8 iflag=direct 2>/dev/null | tr -d '\0' | wc -c)
say "blkdiscard of 8 MiB done (${zeros} non-zero bytes read back there)"

# A filesystem: ext4 by dom0's mke2fs, a tree of files, fsck, mount again, verify.
/sbin/mke2fs -q -F -t ext4 /dev/xvda >/tmp/mkfs.log 2>&1 || fail "mke2fs -t ext4: $(tail -n 1 /tmp/mkfs.log)"
mount -t ext4 /dev/xvda /mnt || fail "mount of the new ext4 failed"
for dir in a a/b a/b/c d; do mkdir -p "/mnt/$dir"; done
count=0
for dir in a a/b a/b/c d; do
    for file in 1 2 3; do
        dd if=/dev/urandom of="/mnt/$dir/f$file" bs=1024 count=$((file * 37 + ${#dir} * 100)) 2>/dev/null
        count=$((count + 1))
    done
done
dd if=/dev/urandom of=/mnt/d/big bs=1048576 count=12 2>/dev/null
(cd /mnt && find . -type f | sort | xargs sha256sum) >/tmp/sums
sync
umount /mnt || fail "umount failed"
/sbin/e2fsck -fn /dev/xvda >/tmp/fsck.log 2>&1 || fail "e2fsck -fn found problems: $(tail -n 2 /tmp/fsck.log | tr '\n' ' ')"
say "e2fsck -fn clean: $(tail -n 1 /tmp/fsck.log)"
mount -t ext4 /dev/xvda /mnt || fail "mounting again failed"
(cd /mnt && sha256sum -c /tmp/sums >/tmp/check.log 2>&1) || fail "checksums differ after remount: $(grep -v ': OK' /tmp/check.log | head -n 2 | tr '\n' ' ')"
fstrim /mnt 2>/dev/null && say "fstrim done" || say "fstrim not done"
sync
umount /mnt || fail "second umount failed"
say "PASS: $((count + 1)) files ($(wc -l </tmp/sums) checksums, 12 MiB the largest) verified after umount, fsck and remount"
INIT
} >"$init"

step "packing the domU's initramfs (busybox, blkfront and ext4 modules, dom0's mke2fs and e2fsck)"
# shellcheck disable=SC2046 # one path per word
initrd=$(linux_domu_initramfs /tmp/blk-guest "$init" /sbin/mke2fs /sbin/e2fsck /etc/mke2fs.conf \
    $(modprobe --show-depends ext4 | awk '$1 == "insmod" { print $2 }')) || fail "no initramfs"
create_linux_domu "$GUEST" "$initrd" "disk=['backend=$LAB_GUEST,vdev=xvda,access=rw,target=ram:64M']"
guest_domid=$(xl domid "$GUEST") || fail "no domid for $GUEST"
step "the domU is d$guest_domid, grantsvc d$GRANTSVC_DOMID, the toolstack dom0"
expect_log 'blk-guest: (PASS|FAIL)' 360 "the domU's verdict" "$GUEST"
verdict=$(grep -m 1 -E 'blk-guest: (PASS|FAIL)' "$(console_log "$GUEST")")
grep 'blk-guest: ' "$(console_log "$GUEST")" | while read -r line; do step "domU: $line"; done
case $verdict in
*"blk-guest: PASS"*) ;;
*) fail "the domU says: ${verdict#*blk-guest: }" ;;
esac

# The three domains: the domU's frontend names grantsvc's backend directory, which names the domU.
devid=$(blk_devid xvda)
backend=/local/domain/$GRANTSVC_DOMID/backend/vbd/$guest_domid/$devid
[ "$(xenstore-read "/local/domain/$guest_domid/device/vbd/$devid/backend")" = "$backend" ] ||
    fail "the domU's xvda does not name $backend as its backend"
[ "$(xenstore-read "$backend/frontend-id")" = "$guest_domid" ] || fail "$backend does not name d$guest_domid"
counters=/local/domain/$GRANTSVC_DOMID/data/grantsvc/vbd/$guest_domid/$devid
requests=$(xenstore-read "$counters/requests" 2>/dev/null) || fail "no per-device requests counter at $counters"
written=$(xenstore-read "$counters/bytes-written" 2>/dev/null) || fail "no bytes-written counter at $counters"
[ "$requests" -gt 100 ] && [ "$written" -gt $((9 << 20)) ] ||
    fail "grantsvc counted $requests requests and $written bytes written for the domU"
note "the domU's data check passed; grantsvc served it $requests requests, $written bytes written"

expect_shut_down_of() {
    local reason
    reason=$(wait_shut_down 60 "$GUEST") || fail "the domU did not shut down after its check"
    [ "$reason" = 0 ] || fail "the domU shut down with reason $reason, not poweroff"
}
expect_shut_down_of
step "xl destroy $GUEST"
xl destroy "$GUEST" || fail "xl destroy $GUEST failed"
wait_gone 30 "$GUEST" || fail "the domU still exists 30 s after xl destroy"
for ((tries = 100; tries > 0; tries--)); do
    xenstore-read "$backend/state" >/dev/null 2>&1 || break
    sleep 0.2
done
! xenstore-read "$backend/state" >/dev/null 2>&1 || fail "grantsvc's backend directory for the domU stayed"
wait_counter mapped-pages eq 0 10 || fail "grantsvc still maps pages after the domU is gone"
! log_has -i 'panicked|page fault|FATAL TRAP' || fail "grantsvc's console log reports a panic or a fatal trap"
destroy_guest
pass
