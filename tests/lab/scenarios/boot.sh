#!/bin/bash
# boot: grantsvc boots under Xen, prints its banner and start_info summary, runs its self-tests and powers itself off.
# lab-timeout: 60
. "$LAB_LIB"

# preserve keeps the shut-down domain listed, so its shutdown reason can be read.
create_guest 'extra="loglevel=info selftest"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log 'grantsvc' 20 "banner naming grantsvc"
expect_log 'start_info: [0-9]+ pages' 20 "start_info summary"
reason=$(wait_shut_down 30) || fail "the domain did not shut down within 30 s of the banner (state $(domain_field State))"
[ "$reason" = 0 ] || fail "the domain shut down with reason code $reason, not 0 (poweroff)"
! log_has -i 'panicked|page fault' || fail "the console log reports a panic or fault"
destroy_guest
pass
