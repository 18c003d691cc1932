#!/bin/bash
# shutdown: grantsvc started as domain.cfg says (no selftest) runs as a service, publishes its state and counters under its home, and `xl shutdown -w` stops it in order: request acknowledged, sessions closed, counters final, poweroff.
# lab-timeout: 150
. "$LAB_LIB"

create_guest 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
expect_log 'watching control/shutdown' 60 "the service watching control/shutdown"
domid=$(xl domid "$LAB_GUEST") || fail "xl domid $LAB_GUEST failed"
home=/local/domain/$domid
published=$home/data/grantsvc
for ((tries = 100; tries > 0; tries--)); do
    [ "$(xenstore-read "$published/state" 2>/dev/null)" = running ] && break
    sleep 0.2
done
[ "$(xenstore-read "$published/state" 2>/dev/null)" = running ] || fail "$published/state is not 'running' 20 s after the service started"
xenstore-ls "$published" >"$LAB_OUT/published-running" 2>&1
for counter in peers mapped-regions mapped-pages maps unmaps faults; do
    value=$(xenstore-read "$published/$counter") || fail "no $published/$counter"
    [[ $value =~ ^[0-9]+$ ]] || fail "$published/$counter is '$value', not a number"
done
[ "$(xenstore-read "$home/control/feature-poweroff")" = 1 ] || fail "control/feature-poweroff is not 1"
[ "$(xenstore-read "$home/control/feature-reboot")" = 1 ] || fail "control/feature-reboot is not 1"
sleep 2
domain_exists || fail "the service stopped by itself"

step "xl shutdown -w $LAB_GUEST"
timeout 60 xl shutdown -w "$LAB_GUEST" || step "xl shutdown -w returned $?"
expect_shut_down 0 "xl shutdown"
expect_log 'shutdown: the toolstack asks for poweroff' 1 "the service seeing the poweroff request"
expect_log 'shutdown: [0-9]+ peer session\(s\) closed; 0 grant page\(s\) still mapped' 1 "sessions closed and nothing mapped"
expect_log '^\[info\] shutdown: poweroff$' 1 "the last line before poweroff (the console was not drained)"
[ "$(xenstore-read "$published/state" 2>/dev/null)" = stopped ] || fail "$published/state is '$(xenstore-read "$published/state" 2>/dev/null)', not 'stopped'"
[ -z "$(xenstore-read "$home/control/shutdown" 2>/dev/null)" ] || fail "control/shutdown was not acknowledged (cleared)"
xenstore-ls "$published" >"$LAB_OUT/published-stopped" 2>&1
! log_has 'PANIC|FATAL' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
