#!/bin/bash
# fault: a deliberate page fault is reported by the trap handler (vector, error code, RIP, CR2) and the domain crashes cleanly.
# lab-timeout: 60
. "$LAB_LIB"

create_guest 'extra="loglevel=info fault"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log 'grantsvc' 20 "banner naming grantsvc"
expect_log -i 'page fault' 20 "page fault report"
expect_log -i 'cr2' 5 "faulting address (CR2) in the report"
expect_log -i 'rip' 5 "instruction pointer (RIP) in the report"
reason=$(wait_shut_down 30) || fail "the domain did not shut down within 30 s of the fault (state $(domain_field State))"
[ "$reason" = 3 ] || fail "the domain shut down with reason code $reason, not 3 (crash)"
destroy_guest
pass
