#!/bin/bash
# blk-data: a grantsvc RAM disk in dom0 holds an ext4 filesystem (files with checksums survive umount, fsck -f and remount), O_DIRECT random data at 4 KiB and 1 MiB reads back identical, discard frees what it names (reads back zeros), flushes go through, and grantsvc's counters moved accordingly.
# lab-timeout: 420
. "$LAB_LIB"
blk_strict

blk_start_grantsvc
blk_attach xvdb 64M
work=$(mktemp -d)
mnt=$work/mnt
mkdir -p "$mnt"

step "mkfs.ext4 (discards the whole disk first)"
mkfs.ext4 -q -F /dev/xvdb
mount /dev/xvdb "$mnt"
step "a tree of files with known checksums"
for dir in a a/b a/b/c d; do
    mkdir -p "$mnt/$dir"
done
size=1
for file in a/one a/b/two a/b/c/three d/four d/five top; do
    head -c $((size * 7919)) /dev/urandom >"$mnt/$file"
    size=$((size * 5))
done
head -c $((3 << 20)) /dev/urandom >"$mnt/d/big"
# fsync of one file, then sync of the filesystem: both reach the backend as flushes.
dd if=/dev/urandom of="$mnt/a/b/fsynced" bs=64k count=16 conv=fsync status=none
sync -f "$mnt"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/manifest"
cp "$work/manifest" "$LAB_OUT/manifest"
step "$(wc -l <"$work/manifest") files, $(du -sk "$mnt" | cut -f1) KiB"
umount "$mnt"
step "fsck.ext4 -f -n"
fsck.ext4 -f -n /dev/xvdb >"$LAB_OUT/fsck" 2>&1 || fail "fsck -f found errors: $(tail -n 1 "$LAB_OUT/fsck")"
mount /dev/xvdb "$mnt"
(cd "$mnt" && sha256sum --quiet -c "$work/manifest") || fail "files differ after umount and remount"
step "every checksum matches after remount"
umount "$mnt"

# O_DIRECT at 4 KiB and 1 MiB requests, at two places of the disk.
head -c $((4 << 20)) /dev/urandom >"$work/small"
head -c $((16 << 20)) /dev/urandom >"$work/large"
dd if="$work/small" of=/dev/xvdb bs=4k seek=1024 oflag=direct status=none
dd if=/dev/xvdb of="$work/small.back" bs=4k skip=1024 count=1024 iflag=direct status=none
cmp "$work/small" "$work/small.back" || fail "4 KiB O_DIRECT data read back differs"
dd if="$work/large" of=/dev/xvdb bs=1M seek=32 oflag=direct conv=fsync status=none
dd if=/dev/xvdb of="$work/large.back" bs=1M skip=32 count=16 iflag=direct status=none
cmp "$work/large" "$work/large.back" || fail "1 MiB O_DIRECT data read back differs"
step "O_DIRECT 4 KiB (4 MiB) and 1 MiB (16 MiB) read back identical"

# Discard: the RAM disk frees the pages, which read as zeros afterwards.
blkdiscard -o $((32 << 20)) -l $((16 << 20)) /dev/xvdb
dd if=/dev/xvdb of="$work/discarded" bs=1M skip=32 count=16 iflag=direct status=none
cmp -n $((16 << 20)) "$work/discarded" /dev/zero || fail "a discarded range does not read as zeros"
step "blkdiscard of 16 MiB: reads back as zeros"

# grantsvc's counters for the device, published at most once a second.
for ((tries = 25; tries > 0; tries--)); do
    [ "$(blk_counter xvdb bytes-written || echo 0)" -ge $((20 << 20)) ] &&
        [ "$(blk_counter xvdb bytes-read || echo 0)" -ge $((20 << 20)) ] && break
    sleep 0.2
done
xenstore-ls "/local/domain/$GRANTSVC_DOMID/data/grantsvc" | tee "$LAB_OUT/counters"
requests=$(blk_counter xvdb requests)
written=$(blk_counter xvdb bytes-written)
read=$(blk_counter xvdb bytes-read)
errors=$(blk_counter xvdb errors)
persistent=$(blk_counter xvdb persistent-grants)
note "xvdb: $requests requests, $written bytes written, $read bytes read, $errors errors, $persistent persistent grants"
[ "$written" -ge $((20 << 20)) ] || fail "grantsvc counts $written bytes written, less than the 20 MiB of O_DIRECT writes"
[ "$read" -ge $((20 << 20)) ] || fail "grantsvc counts $read bytes read, less than the 20 MiB of O_DIRECT reads"
[ "$errors" = 0 ] || fail "grantsvc answered $errors requests with an error"
[ "$persistent" -gt 0 ] || fail "no persistent grant held though blkfront offers them"
[ "$(grantsvc_counter vbd/requests)" -ge "$requests" ] || fail "the service-wide request count is below the device's"

blk_detach xvdb
wait_counter mapped-pages eq 0 10 || fail "grantsvc still maps pages after the detach"
! log_has -i 'panicked|page fault' || fail "the console log reports a panic or fault"
rm -rf "$work"
pass
