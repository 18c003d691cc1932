#!/bin/bash
# The demo's dom0 side: launches grantsvc with the project's domain.cfg and lets it run its job while the host shows its console.
# lab-timeout: 120
. "$LAB_LIB"

# For now grantsvc's job is to boot, run its self-tests and power off; the vchan echo comes later.
create_guest 'extra="loglevel=info selftest"'
expect_log 'grantsvc' 30 "banner naming grantsvc"
wait_gone 60 || fail "grantsvc still running 60 s after its banner"
pass
