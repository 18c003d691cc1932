#!/bin/bash
# memory: issue 10's memory goal: the small-memory scenario (grantsvc boots in memory=8 and serves 1024 mapped grant pages there) run as it is; GOAL p4-memory-mib 8 when it passes.
# lab-timeout: 330
. "$LAB_LIB"

# The scenario runs in its own process with its own verdict file: its `fail` ends only it.
verdict=$LAB_OUT/small-memory-verdict
LAB_VERDICT=$verdict LAB_SCENARIO=small-memory timeout -k 5 300 \
    bash "$LAB_SHARE/lab/scenarios/small-memory.sh" >"$LAB_OUT/small-memory.log" 2>&1
result=$(head -n 1 "$verdict" 2>/dev/null)
table "small-memory scenario in memory=8: ${result:-no verdict (timed out)}"
if [ "$result" = PASS ]; then
    goal p4-memory-mib 8 '<=8'
else
    # Measured only as "not in 8 MiB": the goal line says so and counts as missed.
    goal p4-memory-mib '>8' '<=8'
fi
pass
