#!/bin/bash
# grant-bench: cost per page of grant map + unmap for batches of 1, 8, 64 and 512 pages versus one hypercall per page; prints the table (asserts nothing about speed).
# lab-timeout: 400
. "$LAB_LIB"

run_kernel_scenario grant-bench 340
table=$(sed -n 's/^\[info\] grant-bench: \([|g].*\)/\1/p' "$(console_log)")
rows=$(echo "$table" | grep -cE '^\| +[0-9]+ \|')
[ "$rows" = 4 ] || fail "the benchmark printed $rows rows, not 4"
echo "$table" | tee "$LAB_OUT/bench.txt"
pass
