#!/bin/bash
# The demo's dom0 side: grantsvc runs as a service; vchan-socket-proxy servers in dom0 publish vchans for it; a few lines go through the echo vchan and come back, `help` and `stats` answer on the cmd vchan; then xl shutdown stops grantsvc in order, closing a live session and unmapping it first.
# lab-timeout: 180
. "$LAB_LIB"

start_vchan_guest

# say TEXT: a line for the viewer, which shows the session log live beside grantsvc's console.
say() { step "demo: $*" | tee -a "$LAB_SHARE/out/session.log"; }

# exchange NAME LINE...: a vchan server at $base/NAME (stdin/stdout mode) sends the lines, one a
# second, and prints what grantsvc sent back; the proxy ends when its input does.
exchange() {
    local name=$1 line
    shift
    say "vchan-socket-proxy -m server $domid $base/$name -"
    {
        sleep 1
        for line in "$@"; do
            echo "$line"
            sleep 1
        done
        sleep 2
    } | timeout 60 vchan-socket-proxy -m server "$domid" "$base/$name" - >"$LAB_OUT/$name.out" 2>&1
    while IFS= read -r line; do say "  $name <- grantsvc: $line"; done <"$LAB_OUT/$name.out"
}

exchange echo "hello, grantsvc" "these lines go through a vchan whose pages grantsvc mapped" "and come back unchanged"
for line in "hello, grantsvc" "and come back unchanged"; do
    grep -qxF "$line" "$LAB_OUT/echo.out" || fail "the echo did not send back '$line'"
done
exchange cmd help stats
grep -q '^stats peers=' "$LAB_OUT/cmd.out" || fail "no stats answer on the cmd vchan"
wait_counter mapped-pages eq 0 20 || fail "pages still mapped after the servers left"
say "grantsvc's published state: $(xenstore-ls "/local/domain/$domid/data/grantsvc" | tr -s ' \n' ' ')"
say "a server that stays: vchan-socket-proxy -m server $domid $base/live -, then xl shutdown $LAB_GUEST"
sleep 60 | vchan-socket-proxy -m server "$domid" "$base/live" - >/dev/null 2>&1 &
expect_log "vchan: session d0#[0-9]+ connected to domain 0 at $base/live" 20 "grantsvc connecting to the server that stays"
timeout 60 xl shutdown -w "$LAB_GUEST" >/dev/null 2>&1 || true
expect_shut_down 0 "xl shutdown"
expect_log 'shutdown: 1 peer session\(s\) closed; 0 grant page\(s\) still mapped' 1 "the live session closed and unmapped at shutdown"
destroy_guest
pass
