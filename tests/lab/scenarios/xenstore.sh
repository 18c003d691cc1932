#!/bin/bash
# xenstore: grantsvc reads, writes, mkdirs, lists, removes, sets permissions, watches (its own write and dom0's) and runs a transaction retried on EAGAIN against the real xenstored; dom0 then checks the nodes.
# lab-timeout: 150
. "$LAB_LIB"

create_guest 'extra="loglevel=info scenario=xenstore"' 'on_poweroff="preserve"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
domid=$(xl domid "$LAB_GUEST") || fail "xl domid $LAB_GUEST failed"
base=/local/domain/$domid/data/xenstore-test
expect_log "xenstore: waiting for dom0 to write $base/from-dom0" 60 "the kernel's request for a write by dom0 under its home"
token="dom0-$$-$RANDOM"
step "xenstore-write $base/from-dom0 $token"
xenstore-write "$base/from-dom0" "$token" || fail "xenstore-write $base/from-dom0 failed"
expect_log "xenstore: dom0 wrote \"$token\"" 30 "the kernel reading dom0's value after its watch fired"
expect_log "scenario xenstore: (PASS|FAIL)" 60 "result of the in-kernel scenario"
result=$(grep -m 1 -E "scenario xenstore: (PASS|FAIL)" "$(console_log)")
case $result in
*"scenario xenstore: PASS"*) ;;
*) fail "the kernel says: ${result#*] }" ;;
esac

# dom0's view of what the kernel did.
xenstore-ls -p "$base" >"$LAB_OUT/xenstore-ls" 2>&1 || fail "xenstore-ls -p $base failed"
value=$(xenstore-read "$base/value") || fail "no $base/value"
[ "$value" = "hello from $LAB_GUEST" ] || fail "$base/value is '$value', not 'hello from $LAB_GUEST'"
[ "$(xenstore-read "$base/counter")" = 21 ] || fail "$base/counter is '$(xenstore-read "$base/counter")', not 21"
[ "$(xenstore-read "$base/transaction-attempts")" = 2 ] || fail "the committed transaction was not the second attempt"
children=$(xenstore-list "$base/dir" | sort | tr '\n' ' ')
[ "$children" = "b c " ] || fail "$base/dir lists '$children', not 'b c '"
! xenstore-read "$base/dir/a" >/dev/null 2>&1 || fail "$base/dir/a still exists after rm"
grep -Eq "^value = .*\(n$domid,r0\)" "$LAB_OUT/xenstore-ls" ||
    fail "permissions of $base/value are not n$domid,r0: $(grep '^value' "$LAB_OUT/xenstore-ls")"
[ "$(xenstore-read "$base/result")" = PASS ] || fail "$base/result is not PASS"

expect_shut_down 0 "the scenario's end"
! log_has 'PANIC|FATAL' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
