#!/bin/bash
# boot: grantsvc boots under Xen, prints its banner and start_info summary, passes its self-tests and powers itself off.
# lab-timeout: 90
. "$LAB_LIB"

# preserve keeps the shut-down domain listed, so that its shutdown reason can be read.
create_guest 'extra="loglevel=info selftest"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc and its version"
expect_log '^start_info: [0-9]+ pages .* cmdline "[^"]*selftest' 10 "start_info summary with the command line"
expect_log '^\[info\] selftest: [0-9]+ passed, [0-9]+ failed' 60 "self-test summary"
log_has '^\[info\] selftest: [0-9]+ passed, 0 failed' ||
    fail "self-tests failed: $(grep -E 'selftest .*(fail|FAIL)|selftest: [0-9]+ passed' "$(console_log)" | head -n 3 | tr '\n' ' ')"
expect_shut_down 0 "its self-tests"
expect_log '^\[info\] powering off' 1 "poweroff message (the console was not drained)"
! log_has 'PANIC|FATAL TRAP' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
