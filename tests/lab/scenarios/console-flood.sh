#!/bin/bash
# console-flood: far more console output than the ring holds reaches xenconsoled complete and in order (the ring's wraparound and the wait for space).
# lab-timeout: 120
. "$LAB_LIB"

run_kernel_scenario console-flood 90
lines=$(grep -cE '^\[info\] console-flood line [0-9]{4} of 2000: the quick brown fox jumps over the lazy dog$' "$(console_log)")
[ "$lines" = 2000 ] || fail "$lines of the 2000 numbered lines arrived intact"
expected=$(seq -f '%04g' 0 1999 | tr '\n' ' ')
seen=$(sed -n 's/^\[info\] console-flood line \([0-9]\{4\}\) of 2000: .*/\1/p' "$(console_log)" | tr '\n' ' ')
[ "$seen" = "$expected" ] || fail "the numbered lines arrived out of order or repeated"
pass
