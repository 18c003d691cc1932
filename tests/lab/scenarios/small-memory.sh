#!/bin/bash
# small-memory: grantsvc boots in memory=8 (its heap comes from start_info's free frames, not a static array) and serves 1024 mapped grant pages there at once: four grantsvc-peer shares of 256 pages held together.
# lab-timeout: 300
. "$LAB_LIB"

command -v grantsvc-peer >/dev/null || fail "no grantsvc-peer in the lab's bin folder (make peer)"
create_guest 'memory=8' 'extra="loglevel=info"' 'on_crash="preserve"'
expect_log '^grantsvc [0-9]+\.[0-9]+\.[0-9]+ - ' 30 "banner naming grantsvc"
expect_log 'heap: [0-9]+ KiB of the domain.s free frames' 30 "the heap taken from the domain's frames"
note "$(grep -m 1 -E 'heap: [0-9]+ KiB' "$(console_log)" | sed 's/^.*heap: /heap: /')"
domid=$(xl domid "$LAB_GUEST") || fail "no domid for $LAB_GUEST"
step "grantsvc is d$domid with $(xl list "$LAB_GUEST" | awk 'NR == 2 { print $3 }') MiB"

# Four devices of 256 pages (the share protocol's most per device), all held at once.
pids=()
for devid in 0 1 2 3; do
    grantsvc-peer share --domid "$domid" --pages 256 --devid "$devid" --hold-secs 25 --timeout 90 \
        >"$LAB_OUT/peer-$devid.log" 2>&1 &
    pids+=("$!")
    kill_at_exit "$!"
done
published=/local/domain/$domid/data/grantsvc
peak=0
for ((tries = 150; tries > 0; tries--)); do
    pages=$(xenstore-read "$published/mapped-pages" 2>/dev/null) || pages=0
    [ "$pages" -gt "$peak" ] && peak=$pages
    [ "$peak" -ge 1024 ] && break
    sleep 0.2
done
step "published mapped-pages reached $peak"
for index in "${!pids[@]}"; do
    wait "${pids[$index]}" || true
    tail -n 1 "$LAB_OUT/peer-$index.log" | grep -q '^grantsvc-peer: share ok: ' ||
        fail "device $index: $(tail -n 1 "$LAB_OUT/peer-$index.log")"
done
[ "$peak" -ge 1024 ] || fail "at most $peak grant pages were mapped at once, expected 1024"
! log_has -i 'panicked|page fault|PANIC|FATAL TRAP' || fail "the console log reports a panic or a fault"
for ((tries = 50; tries > 0; tries--)); do
    [ "$(xenstore-read "$published/mapped-pages" 2>/dev/null)" = 0 ] && break
    sleep 0.2
done
[ "$(xenstore-read "$published/mapped-pages")" = 0 ] || fail "pages still mapped after the peers ended"
note "1024 grant pages mapped at once in a memory=8 domain, all unmapped after"
destroy_guest
pass
