#!/bin/bash
# vchan-orders: ring orders other than the smallest: a libxenvchan-compatible server in dom0 (grantsvc-peer vchan-server) asks for separately granted rings (orders 13/14, 12/20, and an in-page ring beside a granted one), grantsvc maps the shared page and every ring page through its pmap (published mapped-pages counts them all), 1 MiB echoes unchanged, and srv_live = 0 unmaps everything.
# lab-timeout: 240
. "$LAB_LIB"

start_vchan_guest

for orders in "13 14" "12 20" "11 13"; do
    read -r left right <<<"$orders"
    name=orders-$left-$right
    step "vchan-server --left-order $left --right-order $right"
    grantsvc-peer vchan-server --domid "$domid" --path "$base/$name" --left-order "$left" \
        --right-order "$right" --bytes 1048576 --timeout 90 >"$LAB_OUT/$name" 2>&1 ||
        fail "orders $left/$right: $(tail -n 1 "$LAB_OUT/$name")"
    note "$(sed -n 's/^grantsvc-peer: vchan-server ok: //p' "$LAB_OUT/$name")"
    expect_log "vchan: session d0#[0-9]+ with domain 0 at $base/$name revoked: server closed the vchan; [0-9]+ page\(s\) unmapped" 10 "the orders $left/$right session ending with its server"
    wait_counter mapped-pages eq 0 10 || fail "orders $left/$right: pages still mapped"
done
wait_counter faults eq 0 5 || fail "grantsvc counted peer faults"
! log_has 'PANIC|FATAL' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
