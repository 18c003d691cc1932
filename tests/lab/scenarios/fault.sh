#!/bin/bash
# fault: a deliberate page fault is reported by the trap handler (vector, error code, RIP, CR2) and the domain crashes cleanly.
# lab-timeout: 60
. "$LAB_LIB"

# The kernel reads this unmapped address when asked for a fault (src/kernel/start.rs).
fault_address=0xffffc0ffdead0000

create_guest 'extra="loglevel=info fault"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
expect_log '^grantsvc: FATAL TRAP: vector 14 \(#PF page fault\), error code 0x[0-9a-f]+ \(read of a not-present page\), RIP 0xffffffff8[0-9a-f]{7}, CR2 '"$fault_address" \
    20 "page-fault report (read of a not-present page, RIP in the kernel, CR2 $fault_address)"
expect_log '^grantsvc: registers: rax ' 5 "register dump after the trap report"
! log_has 'did not fault' || fail "the read of $fault_address did not fault"
expect_shut_down 3 "the fault"
destroy_guest
pass
