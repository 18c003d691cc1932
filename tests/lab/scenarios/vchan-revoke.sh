#!/bin/bash
# vchan-revoke: the vchan-socket-proxy serving grantsvc is killed (SIGKILL) mid-stream → grantsvc logs the revocation, unmaps (its published mapped-pages goes to 0), stays up, and connects again when a new server appears at the same name: a second echo passes.
# lab-timeout: 240
. "$LAB_LIB"

start_vchan_guest

# A stream long enough to be cut in the middle.
head -c $((16 * 1048576)) /dev/urandom >/tmp/vchan-revoke.in
start_proxied_exchange echo first --echo /tmp/vchan-revoke.in --output /tmp/vchan-revoke.out \
    --timeout 120
expect_log "vchan: session d0#[0-9]+ connected to domain 0 at $base/echo" 30 "grantsvc connecting to the first server"
wait_counter mapped-pages ge 1 10 || fail "grantsvc's published mapped-pages did not show the vchan's page while connected"
sleep 2
step "kill -KILL $proxy (the server) mid-stream"
kill -KILL "$proxy" || fail "the proxy had already exited: $(cat "$LAB_OUT/first-proxy")"
wait "$exchange" && fail "the first exchange completed: the stream was not cut"
step "first exchange, cut as meant: $(tail -n 1 "$LAB_OUT/first-exchange")"
expect_log "vchan: session d0#[0-9]+ with domain 0 at $base/echo revoked: server closed the vchan; [0-9]+ page\(s\) unmapped" 20 "grantsvc logging the revocation"
wait_counter mapped-pages eq 0 10 || fail "pages still mapped after the server was killed"
wait_counter peers eq 0 10 || fail "the session is still counted after the server was killed"
note "$(grep -m 1 -o 'vchan: session d0#[0-9]* with domain 0 at .* revoked: .*' "$(console_log)")"
sleep 1
domain_exists || fail "grantsvc stopped after the revocation"
[ "$(domain_field State)" != "" ] || fail "no state for grantsvc"

# A new server at the same name: grantsvc connects again and echoes.
head -c 262144 /dev/urandom >/tmp/vchan-revoke2.in
start_proxied_exchange echo second --echo /tmp/vchan-revoke2.in --output /tmp/vchan-revoke2.out \
    --timeout 90
wait "$exchange" || fail "second echo: $(tail -n 1 "$LAB_OUT/second-exchange")"
cmp -s /tmp/vchan-revoke2.in /tmp/vchan-revoke2.out || fail "the second echo differs from what was sent"
[ "$(grep -cE "vchan: session d0#[0-9]+ connected to domain 0 at $base/echo" "$(console_log)")" -ge 2 ] ||
    fail "grantsvc did not log a second connection"
note "second server: $(sed -n 's/^grantsvc-peer: socket-exchange ok: //p' "$LAB_OUT/second-exchange")"
for ((tries = 150; tries > 0; tries--)); do
    [ "$(grep -cE "at $base/echo revoked: server closed the vchan" "$(console_log)")" -ge 2 ] && break
    sleep 0.2
done
[ "$tries" -gt 0 ] || fail "no second revocation logged 30 s after the second exchange"
wait_counter mapped-pages eq 0 10 || fail "pages still mapped after the second server left"
! log_has 'PANIC|FATAL' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
