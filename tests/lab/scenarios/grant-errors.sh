#!/bin/bash
# grant-errors: bad, out-of-table, revoked and read-only refs, a bad ref inside a batch, overlapping or occupied ranges: each a typed error, nothing left mapped, the kernel keeps running.
# lab-timeout: 150
. "$LAB_LIB"

run_kernel_scenario grant-errors 120
for case in 'a ref never granted: refused: grant ref [0-9]+ of domain [0-9]+ failed: ' \
    'a ref beyond the table: refused: grant ref [0-9]+ of domain [0-9]+ failed: ' \
    'a revoked ref: refused: grant ref [0-9]+ of domain [0-9]+ failed: ' \
    'a never-granted ref in the middle of a batch: refused: grant ref [0-9]+ .*\(0 page\(s\) left mapped\)' \
    'a read-only grant mapped writable: refused: grant ref [0-9]+' \
    'a range overlapping a live region: refused: overlaps the grant region at ' \
    'a range over an ordinary page: refused: .* is already mapped'; do
    log_has "^\[info\] grant-errors: $case" || fail "no typed error logged for: ${case%%:*}"
done
grep -E '^\[info\] grant-errors: .*refused' "$(console_log)" | sed 's/^/  /'
pass
