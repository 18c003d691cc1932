#!/bin/bash
# linux-domu: lib.sh's minimal Linux PV domU (dom0's kernel, a busybox initramfs) boots to its /init, runs the scenario's init script with blkfront loaded, and powers off.
# lab-timeout: 300
. "$LAB_LIB"

cat >"$LAB_OUT/init.sh" <<'INIT'
#!/bin/sh
echo "domU kernel $(uname -r), xen drivers: $(ls /sys/bus/xen/drivers | tr '\n' ' ')"
/sbin/mke2fs -V 2>&1 | head -n 1
INIT
initrd=$(linux_domu_initramfs /tmp/linux-domu "$LAB_OUT/init.sh" /sbin/mke2fs) || fail "no initramfs"
started=$(date +%s.%N)
create_linux_domu linux-domu "$initrd"
expect_log '^linux-domu: init' 240 "the domU's /init" linux-domu
note "xl create to the domU's /init: $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"
expect_log 'scenario-init exited with status 0' 60 "the end of the domU's init script" linux-domu
log_has 'xen drivers: .*vbd' linux-domu || fail "the domU has no blkfront (vbd) driver bound to xenbus"
log_has '^mke2fs [0-9]' linux-domu || fail "mke2fs (copied with its libraries) did not run in the domU"
wait_shut_down 30 linux-domu >/dev/null || fail "the domU did not power off after its init script"
destroy_guest linux-domu
pass
