#!/bin/bash
# The demo's dom0 side: launches grantsvc with the project's domain.cfg and lets it run its job while the host shows its console.
# lab-timeout: 120
. "$LAB_LIB"

# For now grantsvc's job is to boot, run its self-tests and power off; the vchan echo comes later.
create_guest 'extra="loglevel=info selftest"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
reason=$(wait_shut_down 60) || fail "grantsvc still running 60 s after its banner"
[ "$reason" = 0 ] || fail "grantsvc shut down with reason code $reason, not 0 (poweroff)"
destroy_guest
pass
