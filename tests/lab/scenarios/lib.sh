# Helpers for lab scenario scripts, which run in dom0 with the repo's domain.cfg in the working directory.
#
# A scenario script starts with `. "$LAB_LIB"`, drives xl, and ends with `pass` or `fail REASON`
# (the verdict the host reports). The session (tests/lab/dom0/session) sets LAB_SCENARIO, LAB_OUT
# (a folder for extra results), LAB_VERDICT, LAB_SHARE and LAB_BIN (the peer tool's folder, also
# on PATH), bounds the script with its timeout and clears leftover domains afterwards.
# A script may declare its timeout in seconds with a line "# lab-timeout: N" (default 60).
# PATH includes the peer tool's folder and Xen's tools folder (vchan-socket-proxy, ...).
set -u

# The guest's name as domain.cfg sets it; its console log is guest-NAME.log.
LAB_GUEST=$(sed -n 's/^[[:space:]]*name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' domain.cfg | head -n 1)
LAB_CONSOLE_DIR=/var/log/xen/console

step() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }

pass() {
    step "PASS"
    echo "PASS" >"$LAB_VERDICT"
    exit 0
}

# note TEXT: a line the host prints under the scenario's verdict (figures of a benchmark, say).
note() {
    step "note: $*"
    echo "$*" >>"$LAB_OUT/notes"
}

# fail REASON: the scenario fails with REASON (one line), which the host prints.
fail() {
    step "FAIL: $*"
    echo "FAIL: $*" >"$LAB_VERDICT"
    exit 1
}

# console_log [NAME]: the path of a guest's console log (xenconsoled writes it).
console_log() { echo "$LAB_CONSOLE_DIR/guest-${1:-$LAB_GUEST}.log"; }

# admit_release_watch DOMID: the documented toolstack step for a grantsvc domain (README, make
# run): xenstored (XSA-115) sends @releaseDomain watch events to an unprivileged domain only when
# the special node's permissions admit it, so they are set to dom0 owner plus read for DOMID.
admit_release_watch() {
    xenstore-chmod @releaseDomain n0 "r$1" || fail "xenstore-chmod @releaseDomain n0 r$1 failed"
}

# create_guest [XL-OVERRIDE...]: xl create of the project's domain.cfg, with overrides such as
# 'extra="loglevel=info selftest"' or 'on_poweroff="preserve"'. Like `make run`, the domain is
# created paused, admitted to @releaseDomain events and then unpaused, so it sees them from its
# first instruction; LAB_NO_RELEASE_WATCH=1 leaves it unadmitted (what a host that skipped the
# step gives it: peer death must then be noticed without @releaseDomain). LAB_XL_CREATE_FLAGS
# adds xl create flags (-e: no xl daemon waits for the domain's death to clean up after it).
create_guest() {
    local name=$LAB_GUEST argument output status
    for argument in "$@"; do
        case $argument in
        name=*) name=$(echo "${argument#name=}" | tr -d "\"'") ;;
        esac
    done
    # Checked first, so that a domain existing after a failed create can only be this one.
    ! domain_exists "$name" || fail "create_guest: a domain named $name already exists"
    step "xl create -p ${LAB_XL_CREATE_FLAGS:+$LAB_XL_CREATE_FLAGS }domain.cfg $*"
    # shellcheck disable=SC2086 # the flags are words
    output=$(xl create -p ${LAB_XL_CREATE_FLAGS:-} domain.cfg "$@" 2>&1)
    status=$?
    echo "$output"
    if [ "$status" -eq 0 ]; then
        start_paused_guest "$name"
        return 0
    fi
    # Debian's xl 4.17.7 sometimes crashes after building and unpausing the domain, while it
    # forks its domain-monitoring daemon ("daemonizing child ... died due to fatal signal",
    # "corrupted double-linked list"): about one create in twenty under TCG. A failed
    # build destroys the domain, so a domain that exists was created; only xl's on_poweroff /
    # on_crash handling may be missing, which the scenarios' "preserve" and cleanup do not need.
    if domain_exists "$name"; then
        step "xl create exited with status $status but domain $name exists; going on"
        start_paused_guest "$name"
        return 0
    fi
    fail "xl create failed: $(echo "$output" | grep -v '^Parsing config' | head -n 1)"
}

# start_paused_guest NAME: the step between `xl create -p` and the guest's first instruction.
start_paused_guest() {
    local domid
    domid=$(xl domid "$1") || fail "no domid for $1 after xl create -p"
    if [ "${LAB_NO_RELEASE_WATCH:-0}" != 1 ]; then
        admit_release_watch "$domid"
    fi
    xl unpause "$1" || fail "xl unpause $1 failed"
}

# wait_for_log [-i] PATTERN SECONDS [NAME]: true once the guest console log matches the extended
# regular expression PATTERN (-i: ignoring case), false when SECONDS pass first.
wait_for_log() {
    local flags=-E
    if [ "$1" = -i ]; then
        flags=-Ei
        shift
    fi
    local pattern=$1 seconds=$2 log tries
    log=$(console_log "${3:-}")
    for ((tries = seconds * 5; tries > 0; tries--)); do
        grep -q $flags -- "$pattern" "$log" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# expect_log [-i] PATTERN SECONDS WHAT [NAME]: like wait_for_log, but the scenario fails with
# "no WHAT in the console log" when the pattern does not show up in time.
expect_log() {
    local case_flag=()
    if [ "$1" = -i ]; then
        case_flag=(-i)
        shift
    fi
    step "waiting up to $2 s for $3 (/$1/)"
    wait_for_log "${case_flag[@]}" "$1" "$2" "${4:-}" ||
        fail "no $3 in the guest console log within $2 s (pattern /$1/)"
}

# log_has [-i] PATTERN [NAME]: true when the guest console log already matches PATTERN.
log_has() {
    local flags=-E
    if [ "$1" = -i ]; then
        flags=-Ei
        shift
    fi
    grep -q $flags -- "$1" "$(console_log "${2:-}")" 2>/dev/null
}

# domain_field COLUMN [NAME]: a column of `xl list -v` (State, Reason-Code, ID, ...) for the
# domain, or nothing when it does not exist.
domain_field() {
    local column=$1 name=${2:-$LAB_GUEST}
    xl list -v 2>/dev/null | awk -v column="$column" -v name="$name" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == column) index_of = i; next }
        $1 == name && index_of { print $index_of }'
}

domain_exists() { xl domid "${1:-$LAB_GUEST}" >/dev/null 2>&1; }

# domid_listed DOMID: true while `xl list` shows a domain with that id. A dead domain that is
# still held (a "(null)" zombie: another domain maps its pages) is listed under no name.
domid_listed() { xl list | awk -v id="$1" 'NR > 1 && $2 == id { found = 1 } END { exit !found }'; }

# wait_domid_gone DOMID SECONDS: true once `xl list` no longer shows the id.
wait_domid_gone() {
    local tries
    for ((tries = $2 * 5; tries > 0; tries--)); do
        domid_listed "$1" || return 0
        sleep 0.2
    done
    ! domid_listed "$1"
}

# wait_gone SECONDS [NAME]: true once the domain no longer exists.
wait_gone() {
    local seconds=$1 name=${2:-$LAB_GUEST} tries
    for ((tries = seconds * 5; tries > 0; tries--)); do
        domain_exists "$name" || return 0
        sleep 0.2
    done
    return 1
}

# wait_shut_down SECONDS [NAME]: prints the shutdown reason code (0 poweroff, 1 reboot, 2 suspend,
# 3 crash, 4 watchdog, 5 soft reset) once the domain has shut down, which only a domain created
# with on_poweroff/on_crash="preserve" stays around to tell. False when SECONDS pass first or the
# domain disappears.
wait_shut_down() {
    local seconds=$1 name=${2:-$LAB_GUEST} tries reason
    for ((tries = seconds * 5; tries > 0; tries--)); do
        domain_exists "$name" || return 1
        reason=$(domain_field Reason-Code "$name")
        if [ -n "$reason" ] && [ "$reason" != "-" ]; then
            step "$name shut down with reason code $reason" >&2
            echo "$reason"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# expect_shut_down CODE AFTER: the scenario fails unless the guest shuts down within 30 s with
# reason code CODE (0 poweroff, 3 crash, ...); AFTER says what it was to shut down after, for
# the failure line.
expect_shut_down() {
    local expected=$1 after=$2 reason names=(poweroff reboot suspend crash watchdog "soft reset")
    reason=$(wait_shut_down 30) ||
        fail "the domain did not shut down within 30 s of $after (state $(domain_field State))"
    [ "$reason" = "$expected" ] ||
        fail "the domain shut down with reason code $reason, not $expected (${names[$expected]})"
}

# destroy_guest [NAME]: xl destroy, then wait until the domain is gone.
destroy_guest() {
    local name=${1:-$LAB_GUEST}
    step "xl destroy $name"
    {
        echo "# before xl destroy $name"
        xl list -v
    } >>"$LAB_OUT/xl-list" 2>&1
    xl destroy "$name" || fail "xl destroy $name failed"
    wait_gone 20 "$name" || fail "domain $name still exists 20 s after xl destroy"
}

# run_kernel_scenario NAME SECONDS: boots grantsvc with `scenario=NAME`, which runs that scenario's
# in-kernel half; fails unless the kernel prints "scenario NAME: PASS" within SECONDS and then
# powers off cleanly. The caller may check the console log further, then calls pass.
run_kernel_scenario() {
    local name=$1 seconds=$2 result
    create_guest "extra=\"loglevel=info scenario=$name\"" 'on_poweroff="preserve"' 'on_crash="preserve"'
    expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
    expect_log "scenario $name: (PASS|FAIL|unknown)" "$seconds" "result of the in-kernel scenario $name"
    result=$(grep -m 1 -E "scenario $name: (PASS|FAIL|unknown)" "$(console_log)")
    case $result in
    *"scenario $name: PASS"*) ;;
    *) fail "the kernel says: ${result#*] }" ;;
    esac
    expect_shut_down 0 "the scenario's end"
    ! log_has 'PANIC|FATAL TRAP' || fail "the console log reports a panic or a fatal trap"
    destroy_guest
}

# vchan_directory DOMID: creates /local/domain/0/data/vchan/DOMID readable by DOMID and prints its
# path: where dom0's vchan servers for grantsvc publish (`vchan-socket-proxy -m server DOMID
# PATH/NAME SOCKET`) and grantsvc watches. xenstored filters watch events, listings and reads by
# the reader's permissions, so grantsvc sees nothing there unless it may read the directory.
vchan_directory() {
    local base=/local/domain/0/data/vchan/$1
    { xenstore-write "$base" "" && xenstore-chmod "$base" n0 "r$1"; } >&2 ||
        fail "creating $base readable by domain $1"
    echo "$base"
}

# start_vchan_guest: creates grantsvc (kept after poweroff and crash, so its end can be checked),
# waits for its banner and its vchan client, and sets `domid`, GRANTSVC_DOMID and `base` (the
# vchan directory for grantsvc, from vchan_directory): the start every vchan scenario shares.
start_vchan_guest() {
    create_guest 'on_poweroff="preserve"' 'on_crash="preserve"'
    expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
    expect_log 'vchan: serving vchan servers published under' 60 "the vchan client watching for servers"
    domid=$(xl domid "$LAB_GUEST") || fail "xl domid $LAB_GUEST failed"
    GRANTSVC_DOMID=$domid
    # vchan_directory's own fail ends only the command substitution's subshell.
    base=$(vchan_directory "$domid") || fail "no vchan directory for domain $domid"
}

# kill_at_exit PID: the background process PID (a vchan server the scenario started) is killed
# when the script ends, passing or failing, so that it cannot outlive the scenario.
LAB_KILL_AT_EXIT=()
kill_at_exit() {
    LAB_KILL_AT_EXIT+=("$1")
    trap 'kill "${LAB_KILL_AT_EXIT[@]}" 2>/dev/null' EXIT
}

# start_proxied_exchange VCHAN LOG EXCHANGE-OPTION...: grantsvc-peer socket-exchange listening on
# /tmp/SCENARIO-LOG.sock with the options, then (once it listens) vchan-socket-proxy serving
# grantsvc at $base/VCHAN, which connects to that socket when grantsvc connects. Sets `exchange`
# and `proxy` to their pids (the proxy is killed at exit); their output goes to
# $LAB_OUT/LOG-exchange and $LAB_OUT/LOG-proxy.
start_proxied_exchange() {
    local vchan=$1 log=$2 socket=/tmp/$LAB_SCENARIO-$2.sock
    shift 2
    rm -f "$socket"
    grantsvc-peer socket-exchange --listen "$socket" "$@" >"$LAB_OUT/$log-exchange" 2>&1 &
    exchange=$!
    wait_socket "$socket" 10 || fail "socket-exchange is not listening on $socket"
    vchan-socket-proxy -m server "$domid" "$base/$vchan" "$socket" >"$LAB_OUT/$log-proxy" 2>&1 &
    proxy=$!
    kill_at_exit "$proxy"
}

# grantsvc_counter NAME [DOMID]: a counter grantsvc publishes under its home's data/grantsvc
# (DOMID defaults to GRANTSVC_DOMID when the scenario set it, else xl domid's answer).
grantsvc_counter() {
    local domid=${2:-${GRANTSVC_DOMID:-$(xl domid "$LAB_GUEST" 2>/dev/null)}}
    xenstore-read "/local/domain/$domid/data/grantsvc/$1" 2>/dev/null
}

# wait_counter NAME OP VALUE SECONDS: true once grantsvc's published counter NAME compares to
# VALUE with OP (eq, ge, gt, le, lt: test's operators), false when SECONDS pass first.
wait_counter() {
    local name=$1 op=$2 value=$3 seconds=$4 tries current
    for ((tries = seconds * 5; tries > 0; tries--)); do
        current=$(grantsvc_counter "$name")
        [ -n "$current" ] && [ "$current" "-$op" "$value" ] && return 0
        sleep 0.2
    done
    step "grantsvc's $name is '${current:-}', not -$op $value after $seconds s"
    return 1
}

# wait_socket PATH SECONDS: true once a UNIX socket exists at PATH (a listener started in the
# background is ready), false when SECONDS pass first.
wait_socket() {
    local tries
    for ((tries = $2 * 10; tries > 0; tries--)); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# linux_domu_initramfs DIR INIT [PROGRAM...]: packs DIR/initrd.gz for a minimal Linux PV domU and
# prints its path. DIR should be in dom0's own /tmp: the 9p share ($LAB_OUT) takes minutes for the
# hundreds of small files and links. It holds dom0's static busybox with its applets, the modules xen-blkfront needs
# (Debian builds blkfront as a module; the PV console and xenbus are built in), the shell script
# INIT as /scenario-init, and each PROGRAM (an absolute path such as /sbin/mke2fs) with the shared
# libraries ldd names. The domU's /init mounts /proc, /sys and /dev, loads the modules, prints
# "linux-domu: init" (the mark a boot-time figure ends at), runs /scenario-init and powers off.
linux_domu_initramfs() {
    local dir=$1 init=$2 root applet module program library
    shift 2
    root=$dir/root
    rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,lib/modules} ||
        fail "linux_domu_initramfs: cannot make $root"
    cp /bin/busybox "$root/bin/busybox" || fail "linux_domu_initramfs: no /bin/busybox in dom0"
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    # --show-depends lists the modules in load order, dependencies first.
    for module in $(modprobe --show-depends xen-blkfront | awk '$1 == "insmod" { print $2 }'); do
        cp "$module" "$root/lib/modules/" && basename "$module" >>"$root/lib/modules/order" ||
            fail "linux_domu_initramfs: cannot copy $module"
    done
    for program in "$@"; do
        cp --parents "$program" "$root" || fail "linux_domu_initramfs: cannot copy $program"
        for library in $(ldd "$program" 2>/dev/null | grep -o '/[^ ]*'); do
            [ -e "$root$library" ] || cp --parents "$library" "$root" ||
                fail "linux_domu_initramfs: cannot copy $library for $program"
        done
    done
    cp "$init" "$root/scenario-init" && chmod +x "$root/scenario-init" ||
        fail "linux_domu_initramfs: cannot copy $init"
    cat >"$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "linux-domu: init"
for module in $(cat /lib/modules/order); do insmod "/lib/modules/$module"; done
/scenario-init
echo "linux-domu: scenario-init exited with status $?"
poweroff -f
INIT
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/initrd.gz" ||
        fail "linux_domu_initramfs: cpio of $root failed"
    echo "$dir/initrd.gz"
}

# create_linux_domu NAME INITRD [CFG-LINE...]: creates a PV domU named NAME that runs dom0's own
# kernel with INITRD (from linux_domu_initramfs) and its console on hvc0 (logged as
# guest-NAME.log), kept after poweroff and crash so its end can be read; CFG-LINE adds lines such
# as "disk=['backend=grantsvc,vdev=xvda,access=rw,target=ram:64M']" or "memory=256".
create_linux_domu() {
    local name=$1 initrd=$2 config line
    shift 2
    config=$LAB_OUT/$name.cfg
    {
        echo "name = \"$name\""
        echo 'type = "pv"'
        echo "kernel = \"/boot/vmlinuz-$(uname -r)\""
        echo "ramdisk = \"$initrd\""
        echo 'extra = "console=hvc0 loglevel=4"'
        echo 'memory = 192'
        echo 'vcpus = 1'
        echo 'on_poweroff = "preserve"'
        echo 'on_crash = "preserve"'
        for line in "$@"; do echo "$line"; done
    } >"$config"
    step "xl create $config (a Linux PV domU)"
    xl create "$config" || domain_exists "$name" || fail "xl create of the Linux domU $name failed"
}

# Benchmarks (tests/lab/benches/*.sh, `make bench`) use the same helpers, and these two:
# table LINE... appends lines to the bench's table, which the host prints under its verdict;
# goal NAME MEASURED TARGET records one goal ("GOAL p1-b8 1.12 <=1.25"; TARGET is <=N or >=N),
# which the host prints with every other goal at the end. A bench passes when it measured what
# it measures, whether or not its goals are met; it fails only when it could not measure.
table() {
    printf '%s\n' "$@" | tee -a "$LAB_OUT/table"
}

goal() {
    step "GOAL $1 $2 $3"
    echo "GOAL $1 $2 $3" >>"$LAB_OUT/goals"
}

# --- Block devices served by grantsvc (blk-* scenarios) ---

# blk_strict: the blk scenarios' shell mode: any failing command fails the scenario with its
# line and command (conditions, `!` and `||` excepted, as bash defines them).
blk_strict() {
    set -Eeuo pipefail
    trap 'fail "line $LINENO: \`$BASH_COMMAND\` exited $?"' ERR
    trap blk_leave_no_disk EXIT
}

# blk_leave_no_disk: at a blk scenario's exit, passing or failing, a grantsvc disk still in dom0
# is detached (or its nodes removed), so that the next scenario finds blkfront unused.
blk_leave_no_disk() {
    local device
    trap - ERR
    set +e
    for device in $(xenstore-list /local/domain/0/device/vbd 2>/dev/null); do
        timeout 30 xl block-detach 0 "$device" >/dev/null 2>&1 ||
            xenstore-rm "/local/domain/0/device/vbd/$device" 2>/dev/null
    done
}

# blk_start_grantsvc [XL-OVERRIDE...]: grantsvc with room for RAM disks (memory=160: about
# 140 MiB of disks), dom0's blkfront loaded; sets GRANTSVC_DOMID once the block backend serves.
blk_start_grantsvc() {
    modprobe xen_blkfront 2>/dev/null || modprobe xen-blkfront || fail "modprobe xen-blkfront failed"
    create_guest 'extra="loglevel=info"' 'memory=160' "$@"
    GRANTSVC_DOMID=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
    expect_log 'blkif: serving block devices under ' 30 "the block backend's start line"
    step "grantsvc is d$GRANTSVC_DOMID"
}

# blk_devid VDEV: the xenstore device id of xvdX (202 << 8 | 16 * index), for X in a..z.
blk_devid() {
    local letter=${1#xvd}
    local index
    index=$(($(printf '%d' "'$letter") - 97))
    echo $((202 * 256 + 16 * index))
}

# blk_backend_dir VDEV: grantsvc's backend directory of dom0's VDEV.
blk_backend_dir() { echo "/local/domain/$GRANTSVC_DOMID/backend/vbd/0/$(blk_devid "$1")"; }

# blk_attach VDEV SIZE [ACCESS]: xl block-attach of a RAM disk of SIZE (64M, 1G, ...) to dom0,
# bounded by 30 s; then waits up to 20 s for /dev/VDEV.
blk_attach() {
    local vdev=$1 size=$2 access=${3:-rw} tries
    step "xl block-attach 0 'backend=$LAB_GUEST,vdev=$vdev,access=$access,target=ram:$size'"
    timeout 30 xl block-attach 0 "backend=$LAB_GUEST,vdev=$vdev,access=$access,target=ram:$size" ||
        fail "xl block-attach of $vdev (ram:$size) failed or took more than 30 s (status $?)"
    for ((tries = 100; tries > 0; tries--)); do
        [ -b "/dev/$vdev" ] && return 0
        sleep 0.2
    done
    fail "/dev/$vdev did not appear within 20 s of xl block-attach"
}

# blk_detach VDEV: xl block-detach, bounded by 30 s (xl's own waits are 10 s each); then the
# backend directory must be gone (grantsvc removes it) and /dev/VDEV too.
blk_detach() {
    local vdev=$1 tries
    step "xl block-detach 0 $vdev"
    timeout 30 xl block-detach 0 "$vdev" || fail "xl block-detach of $vdev failed or took more than 30 s (status $?)"
    ! xenstore-read "$(blk_backend_dir "$vdev")/state" >/dev/null 2>&1 ||
        fail "the backend directory of $vdev is still there after xl block-detach"
    for ((tries = 50; tries > 0; tries--)); do
        [ ! -e "/dev/$vdev" ] && return 0
        sleep 0.2
    done
    fail "/dev/$vdev is still there 10 s after xl block-detach"
}

# blk_counter VDEV NAME: a per-device counter grantsvc publishes for dom0's VDEV (requests,
# bytes-read, bytes-written, errors, persistent-grants, ring-pages).
blk_counter() {
    xenstore-read "/local/domain/$GRANTSVC_DOMID/data/grantsvc/vbd/0/$(blk_devid "$1")/$2" 2>/dev/null
}

# blk_dom0_pins_by_grantsvc: how many of dom0's grants Xen's own dump (`xl debug-keys g`, read
# back from `xl dmesg`) shows mapped by grantsvc; fails when no complete dump can be read.
blk_dom0_pins_by_grantsvc() {
    local count
    xl debug-keys g || fail "xl debug-keys g failed"
    sleep 1
    count=$(xl dmesg | awk -v be="$GRANTSVC_DOMID" '
        /gnttab_usage_print_all \[ key .g. pressed/ { inside = 1; table = ""; count = 0; next }
        /gnttab_usage_print_all \] done/ { if (inside) { done = 1; final = count } inside = 0; next }
        inside && /grant-table for remote d[0-9]+/ {
            match($0, /remote d[0-9]+/); table = substr($0, RSTART + 8, RLENGTH - 8); next
        }
        inside && table == "0" {
            for (i = 1; i < NF; i++) if ($i ~ /^\[0x[0-9a-f]+\]$/) { if ($(i + 1) == be) count++; break }
        }
        END { if (!done) exit 2; print final }') ||
        fail "no complete grant-table dump in xl dmesg after xl debug-keys g"
    echo "$count"
}

# blk_check_no_leak WHAT: grantsvc maps nothing (its counters) and Xen shows none of dom0's
# grants mapped by it; grantsvc is still running.
blk_check_no_leak() {
    local pins state
    wait_counter mapped-pages eq 0 10 || fail "$1: grantsvc still maps $(grantsvc_counter mapped-pages) page(s)"
    wait_counter peers eq 0 10 || fail "$1: grantsvc still counts $(grantsvc_counter peers) peer(s)"
    pins=$(blk_dom0_pins_by_grantsvc)
    [ "$pins" = 0 ] || fail "$1: Xen's grant dump shows $pins of dom0's grants mapped by grantsvc"
    state=$(domain_field State)
    case $state in
    "" | *c* | *s* | *d*) fail "$1: grantsvc is not running (state '$state')" ;;
    esac
    step "$1: nothing mapped (grantsvc's counters and Xen's grant dump), grantsvc running"
}

# --- xenstored's quotas (many-devices) ---

# xenstored_quota NAME: the quota NAME (nodes, watches, transactions, ...) in force for every
# unprivileged domain, as `xenstore-control quota` lists it.
xenstored_quota() {
    xenstore-control quota 2>/dev/null | awk -v name="$1" '$1 == name && $2 == ":" { print $3 }'
}

# xenstored_usage DOMID NAME: what domain DOMID uses of quota NAME (nodes, watches, ...), as
# `xenstore-control quota DOMID` lists it.
xenstored_usage() {
    xenstore-control quota "$1" 2>/dev/null | awk -v name="$2" '$1 == name && $2 == ":" { print $3 }'
}

# lower_xenstored_quota NAME VALUE: sets xenstored's quota NAME to VALUE for the rest of the
# scenario (xenstored 4.17 takes it at run time: `xenstore-control quota set`); the value in
# force before is put back when the script ends, passing, failing or killed by its timeout
# (this sets the script's EXIT, TERM and INT traps: not for a script that uses kill_at_exit).
LAB_QUOTAS_TO_RESTORE=()
lower_xenstored_quota() {
    local before
    before=$(xenstored_quota "$1")
    [ -n "$before" ] || fail "xenstore-control quota lists no quota '$1'"
    LAB_QUOTAS_TO_RESTORE+=("$1=$before")
    trap restore_xenstored_quotas EXIT
    trap 'restore_xenstored_quotas; exit 1' TERM INT
    step "xenstore-control quota set $1 $2 (was $before)"
    xenstore-control quota set "$1" "$2" >/dev/null || fail "xenstore-control quota set $1 $2 failed"
}

restore_xenstored_quotas() {
    local entry
    for entry in "${LAB_QUOTAS_TO_RESTORE[@]}"; do
        xenstore-control quota set "${entry%%=*}" "${entry#*=}" >/dev/null 2>&1 ||
            echo "could not restore xenstored's quota ${entry%%=*} to ${entry#*=}" >&2
    done
    LAB_QUOTAS_TO_RESTORE=()
}
