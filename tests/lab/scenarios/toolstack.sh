#!/bin/bash
# toolstack: the lab itself works (Xen 4.17 answers xl, xenstored answers, the Xen devices grantsvc's peers use exist), so other failures point at grantsvc.
# lab-timeout: 30
. "$LAB_LIB"

info=$(xl info) || fail "xl info failed"
version=$(echo "$info" | awk -F': *' '$1 ~ /^xen_version/ { print $2 }')
case $version in
4.17.*) step "Xen $version" ;;
*) fail "xl info reports Xen '$version', not 4.17" ;;
esac
xenstore-read domid >/dev/null || fail "xenstore-read domid failed: xenstored does not answer"
for device in evtchn gntalloc gntdev privcmd xenbus; do
    [ -c "/dev/xen/$device" ] || fail "/dev/xen/$device is missing"
done
[ -f domain.cfg ] || fail "no domain.cfg in the share"
# xenstored's quotas bound how many peers grantsvc serves (README): record the ones in force.
quotas=$(xenstore-control quota 2>&1) || fail "xenstore-control quota failed: $quotas"
echo "$quotas" >"$LAB_OUT/xenstored-quotas"
note "xenstored quotas: $(echo "$quotas" | tr -s ' \n' ' ')"
pass
