#!/bin/bash
# pmap-mixed-remove: ordinary, foreign and grant pages in one range are all gone after ONE remove; no fault from Xen, every grant entry ends, counts back to baseline.
# lab-timeout: 150
. "$LAB_LIB"

run_kernel_scenario pmap-mixed-remove 120
log_has '^\[info\] pmap-mixed-remove: one remove of 16 pages: RemoveSummary \{ ordinary_pages: 6, grant_pages: 9' ||
    fail "the kernel did not report one remove of 6 ordinary/foreign and 9 grant pages"
pass
