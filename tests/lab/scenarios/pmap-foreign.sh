#!/bin/bash
# pmap-foreign: enter_foreign of our own machine frames with and without MMU_PT_UPDATE_NO_TRANSLATE; data read and written through the mapping; removed; counts back to baseline.
# lab-timeout: 150
. "$LAB_LIB"

run_kernel_scenario pmap-foreign 120
log_has '^\[info\] pmap-foreign: owner DOMID_SELF: mapped, read and written back' ||
    fail "no successful foreign mapping with owner DOMID_SELF"
log_has '^\[info\] pmap-foreign: owner DOMID_SELF \+ NO_TRANSLATE: mapped, read and written back' ||
    fail "no successful foreign mapping with NO_TRANSLATE"
grep -E '^\[info\] pmap-foreign: owner ' "$(console_log)" | sed 's/^/  /'
pass
