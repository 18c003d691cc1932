#!/bin/bash
# grant-map: self-granted pages mapped by enter_gnt at VAs the pmap chooses, data checked both ways, 1,000 map/remove cycles, nothing left mapped.
# lab-timeout: 300
. "$LAB_LIB"

run_kernel_scenario grant-map 240
log_has '^\[info\] grant-map: 1000 map/remove cycles' || fail "the kernel did not report its 1,000 cycles"
log_has '^\[info\] grant-map: every self-granted entry ended; no grant page live' ||
    fail "the kernel did not report every grant ended with nothing live"
pass
