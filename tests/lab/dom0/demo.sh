#!/bin/bash
# The demo's dom0 side: grantsvc runs as a service; dom0 attaches a grantsvc RAM disk with xl block-attach, makes a filesystem on it, writes and reads back files with their checksums shown, prints grantsvc's counters for the disk and detaches it; vchan-socket-proxy servers in dom0 publish vchans for it; a few lines go through the echo vchan and come back, `help` and `stats` answer on the cmd vchan; then xl shutdown stops grantsvc in order, closing a live session and unmapping it first.
# lab-timeout: 300
. "$LAB_LIB"

start_vchan_guest

# say TEXT: a line for the viewer, which shows the session log live beside grantsvc's console.
say() { step "demo: $*" | tee -a "$LAB_SHARE/out/session.log"; }

# exchange NAME LINE...: a vchan server at $base/NAME (stdin/stdout mode) sends the lines, one a
# second, and prints what grantsvc sent back; the proxy ends when its input does.
exchange() {
    local name=$1 line
    shift
    say "vchan-socket-proxy -m server $domid $base/$name -"
    {
        sleep 1
        for line in "$@"; do
            echo "$line"
            sleep 1
        done
        sleep 2
    } | timeout 60 vchan-socket-proxy -m server "$domid" "$base/$name" - >"$LAB_OUT/$name.out" 2>&1
    while IFS= read -r line; do say "  $name <- grantsvc: $line"; done <"$LAB_OUT/$name.out"
}

exchange echo "hello, grantsvc" "these lines go through a vchan whose pages grantsvc mapped" "and come back unchanged"
for line in "hello, grantsvc" "and come back unchanged"; do
    grep -qxF "$line" "$LAB_OUT/echo.out" || fail "the echo did not send back '$line'"
done
exchange cmd help stats
grep -q '^stats peers=' "$LAB_OUT/cmd.out" || fail "no stats answer on the cmd vchan"
wait_counter mapped-pages eq 0 20 || fail "pages still mapped after the servers left"
say "grantsvc's published state: $(xenstore-ls "/local/domain/$domid/data/grantsvc" | tr -s ' \n' ' ')"
# A virtual disk served by grantsvc, as a user attaches one (domain.cfg's 64 MiB leave grantsvc
# about 40 MiB for RAM disks).
modprobe xen_blkfront || fail "modprobe xen_blkfront failed"
say "xl block-attach 0 'backend=$LAB_GUEST,vdev=xvdb,access=rw,target=ram:32M'"
blk_attach xvdb 32M >/dev/null
say "/dev/xvdb: $(blockdev --getsize64 /dev/xvdb) bytes; $(dmesg | grep 'blkfront: xvdb: ' | tail -n 1 | sed 's/.*blkfront: //')"
mnt=$(mktemp -d)
say "mkfs.ext4 /dev/xvdb && mount /dev/xvdb $mnt"
mkfs.ext4 -q -F /dev/xvdb && mount /dev/xvdb "$mnt" || fail "mkfs or mount of /dev/xvdb failed"
echo "hello from a disk grantsvc holds in its memory" >"$mnt/hello.txt"
head -c $((1 << 20)) /dev/urandom >"$mnt/random-1M"
head -c $((5 << 20)) /dev/urandom >"$mnt/random-5M"
(cd "$mnt" && sha256sum hello.txt random-1M random-5M) >"$LAB_OUT/demo.sha256"
while IFS= read -r line; do say "  written: $line"; done <"$LAB_OUT/demo.sha256"
umount "$mnt" && mount /dev/xvdb "$mnt" || fail "remounting /dev/xvdb failed"
say "umount, mount again, sha256sum -c:"
(cd "$mnt" && sha256sum -c "$LAB_OUT/demo.sha256") >"$LAB_OUT/demo.check" 2>&1 || fail "files differ after remount: $(cat "$LAB_OUT/demo.check")"
while IFS= read -r line; do say "  $line"; done <"$LAB_OUT/demo.check"
say "  hello.txt reads: $(cat "$mnt/hello.txt")"
umount "$mnt"
sleep 1.5
say "grantsvc's counters for the disk (xenstore-ls /local/domain/$domid/data/grantsvc/vbd):"
xenstore-ls "/local/domain/$domid/data/grantsvc/vbd" >"$LAB_OUT/demo.counters"
while IFS= read -r line; do say "  $line"; done <"$LAB_OUT/demo.counters"
say "xl block-detach 0 xvdb"
blk_detach xvdb >/dev/null
say "detached: grantsvc unmapped everything and removed its backend directory ($(grantsvc_counter mapped-pages) page(s) mapped)"
say "a server that stays: vchan-socket-proxy -m server $domid $base/live -, then xl shutdown $LAB_GUEST"
sleep 60 | vchan-socket-proxy -m server "$domid" "$base/live" - >/dev/null 2>&1 &
expect_log "vchan: session d0#[0-9]+ connected to domain 0 at $base/live" 20 "grantsvc connecting to the server that stays"
timeout 60 xl shutdown -w "$LAB_GUEST" >/dev/null 2>&1 || true
expect_shut_down 0 "xl shutdown"
expect_log 'shutdown: 1 peer session\(s\) closed; 0 grant page\(s\) still mapped' 1 "the live session closed and unmapped at shutdown"
destroy_guest
pass
