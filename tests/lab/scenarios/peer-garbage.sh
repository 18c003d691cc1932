#!/bin/bash
# peer-garbage: fake vchan servers (grantsvc-peer vchan-garbage) publish a non-numeric ring-ref, an out-of-range ring order, an invalid event channel and ring indices beyond the ring → each ends that session with a log line naming the peer and the fault, nothing stays mapped, grantsvc keeps running and then serves a good server (an echo).
# lab-timeout: 240
. "$LAB_LIB"

start_vchan_guest
wait_counter faults eq 0 20 || fail "grantsvc's faults counter is not published as 0"

# KIND and the fault grantsvc must name (an extended regular expression).
checks=(
    "ring-ref-non-numeric|ring-ref: non-numeric value \"12ab\""
    "order-out-of-range|vchan: left \(client-to-server\) ring has order 21, outside 10\.\.=20"
    "event-channel-invalid|binding its event channel 131071 failed with status -[0-9]+"
    "index-beyond-ring|vchan: right \(server-to-client\) ring index 65536 is beyond the ring \(our index 0, size 2048\)"
)
expected_faults=0
for check in "${checks[@]}"; do
    kind=${check%%|*}
    fault=${check#*|}
    step "vchan-garbage --kind $kind"
    grantsvc-peer vchan-garbage --domid "$domid" --path "$base/$kind" --kind "$kind" --timeout 30 \
        >"$LAB_OUT/garbage-$kind" 2>&1 || fail "$kind: $(tail -n 1 "$LAB_OUT/garbage-$kind")"
    expected_faults=$((expected_faults + 1))
    expect_log "vchan: session d0#[0-9]+ at $base/$kind revoked: peer domain 0: $fault; session ended; [0-9]+ page\(s\) unmapped, port closed" 5 "the $kind fault logged with the peer's domain"
    wait_counter mapped-pages eq 0 5 || fail "$kind: pages still mapped"
    wait_counter faults eq "$expected_faults" 5 || fail "$kind: faults is not $expected_faults"
    note "$kind: $(grep -m 1 -oE "revoked: peer domain 0: $fault" "$(console_log)")"
    domain_exists || fail "grantsvc stopped after $kind"
done

# The service still serves a good server.
head -c 65536 /dev/urandom >/tmp/vchan-garbage.in
start_proxied_exchange echo echo --echo /tmp/vchan-garbage.in --output /tmp/vchan-garbage.out \
    --timeout 60
wait "$exchange" || fail "the good echo after the garbage: $(tail -n 1 "$LAB_OUT/echo-exchange")"
cmp -s /tmp/vchan-garbage.in /tmp/vchan-garbage.out || fail "the good echo differs from what was sent"
note "then a good server: $(sed -n 's/^grantsvc-peer: socket-exchange ok: //p' "$LAB_OUT/echo-exchange")"
wait_counter mapped-pages eq 0 30 || fail "pages still mapped after the good server left"
wait_counter faults eq "$expected_faults" 5 || fail "faults changed during the good echo"
! log_has 'PANIC|FATAL' || fail "the console log reports a panic or a fatal trap"
destroy_guest
pass
