#!/bin/bash
# panic: a deliberate panic prints its message and source location, and the domain ends as crashed.
# lab-timeout: 60
. "$LAB_LIB"

create_guest 'extra="loglevel=info panic"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
expect_log '^grantsvc: PANIC: deliberate panic requested on the command line at src/[^:]+\.rs:[0-9]+:[0-9]+' 20 \
    "panic message with its location"
expect_shut_down 3 "the panic"
destroy_guest
pass
