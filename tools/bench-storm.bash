# shellcheck shell=bash
# Sourced by tools/bench-compare (after tools/bench-scale.bash, whose private Redis and replica
# helpers it uses): W8, a join storm (issue 26).
#
#   W8  one document seeded with 20 MiB of text (16 KiB inserts at 100/s, as an editing session
#       leaves it), then 150 providers join it at once (docroom-loadgen --preset w8).
#
# docroom (/yjs, default settings: its 16 MiB member backlog is smaller than the document) and
# Hocuspocus, each fresh, on a private redis-server. Reported for each: joiners synced and
# closed (a joiner closed while syncing fails to connect; one closed in the 10 s it stays
# connected afterwards is dropped), the time from the storm's start to the last joiner's sync
# step 2, the server's RSS growth during the storm, and its CPU seconds (and its Redis's) over
# the storm. RSS growth: the server's peak RSS while the joiners sync less its RSS as the storm
# starts; the hook resets the peak at the start (writing 5 to /proc/PID/clear_refs), so the
# seeding's own peak does not count.
#
# Environment (all optional): BENCH_W8_BYTES (20971520), BENCH_W8_JOINERS (150),
#   BENCH_W8_HOLD_SECS (10).

readonly W8_BYTES=${BENCH_W8_BYTES:-20971520} W8_JOINERS=${BENCH_W8_JOINERS:-150}
readonly W8_HOLD=${BENCH_W8_HOLD_SECS:-10}
# One line per run: name cpu_s redis_cpu_s rss_before_kb rss_peak_kb json
readonly STORM_RESULTS=$WORK/storm.tsv
: >"$STORM_RESULTS"

# The storm's hook: "PHASE server_ticks redis_ticks rss_kb" (VmRSS at the start, then the peak
# reset; VmHWM at the end), summed over the server's processes.
readonly STORM_SNAPSHOT=$WORK/storm-snapshot
cat >"$STORM_SNAPSHOT" <<'EOF'
#!/usr/bin/env bash
out=$1 redis_pid=$2
shift 2
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
t=0 rss=0
for p in "$@"; do
    t=$((t + $(ticks "$p")))
    if [ "${LOADGEN_PHASE:-}" = start ]; then
        rss=$((rss + $(kb "$p" VmRSS)))
        echo 5 >"/proc/$p/clear_refs"
    else
        rss=$((rss + $(kb "$p" VmHWM)))
    fi
done
echo "${LOADGEN_PHASE:-?} $t $(ticks "$redis_pid") $rss" >>"$out"
EOF
chmod +x "$STORM_SNAPSHOT"

run_storm_workload() {
    has "$WORKLOADS" w8 || return 0
    local server json snap
    for server in $SCALE_SERVERS; do
        start_private_redis "$server.w8"
        start_replicas "$server" "$server.w8" 1
        json=$OUT_DIR/$server.w8.json snap=$OUT_DIR/$server.w8.storm
        : >"$snap"
        log "$server w8: $W8_JOINERS joiners on $(size_label "$W8_BYTES")"
        "$LOADGEN" --json --label "$server" --preset w8 --protocol "$PROTOCOL" "${URL_ARGS[@]}" \
            --seed-bytes "$W8_BYTES" --seed-insert-bytes 16384 --seed-rate 100 \
            --clients $((W8_JOINERS + 1)) --connect-concurrency $((W8_JOINERS + 1)) \
            --duration-secs "$W8_HOLD" --doc-prefix "bc-$RUN_ID-w8" \
            --window-hook "$STORM_SNAPSHOT $snap $PRIV_REDIS_PID ${REPLICA_PIDS[*]}" \
            >"$json" 2>"$OUT_DIR/$server.w8.loadgen.log" ||
            log "$server w8: load generator exited non-zero (see $OUT_DIR/$server.w8.loadgen.log)"
        awk -v n="$server" -v j="$json" -v t="$CLK_TCK" '
            $1 == "start" { s = $2; r = $3; rss = $4 }
            $1 == "end" { es = $2; er = $3; peak = $4 }
            END {
                if (es == "") printf "%s\tn/a\tn/a\tn/a\tn/a\t%s\n", n, j
                else printf "%s\t%.2f\t%.2f\t%d\t%d\t%s\n", n, (es - s) / t, (er - r) / t, rss, peak, j
            }' "$snap" >>"$STORM_RESULTS"
        grep '^|' "$OUT_DIR/$server.w8.loadgen.log" | head -n 4 >&2 || true
        stop_replicas
    done
}

storm_row() { awk -F'\t' -v n="$1" '$1 == n' "$STORM_RESULTS"; }
# The server's RSS growth during the storm, in MiB ("n/a" without a sample).
rss_growth() { # ROW
    awk -F'\t' '{ if ($2 == "n/a" || $2 == "") print "n/a"; else printf "%.0f\n", ($5 - $4) / 1024 }' <<<"$1"
}

report_storm() {
    has "$WORKLOADS" w8 && [ -s "$STORM_RESULTS" ] || return 0
    echo "## W8 — join storm ($W8_JOINERS providers join one $(size_label "$W8_BYTES") document at once)"
    echo
    echo "Seeded first in 16 KiB inserts at 100/s (not measured). RSS growth: the server's peak RSS"
    echo "while the joiners sync less its RSS as the storm starts. CPU: over the storm, from its start"
    echo "to the last joiner's sync step 2."
    echo
    echo "| server | synced | failed / closed afterwards | time to last sync s | sync p50 / p99 ms | RSS growth MiB | server CPU s | Redis CPU s |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    local s line json
    for s in $SCALE_SERVERS; do
        line=$(storm_row "$s")
        [ -n "$line" ] || continue
        json=$(cut -f6 <<<"$line")
        echo "| $s | $(jq -r '"\(.join_storm.synced) of \(.join_storm.joiners)"' "$json")" \
            "| $(jq -r '"\(.connections.failed) / \(.connections.dropped)"' "$json")" \
            "| $(num "$json" .join_storm.time_to_last_sync_secs)" \
            "| $(num "$json" .join_storm.sync_ms.p50) / $(num "$json" .join_storm.sync_ms.p99)" \
            "| $(rss_growth "$line") | $(cut -f2 <<<"$line") | $(cut -f3 <<<"$line") |"
    done
    echo
    local d h
    d=$(storm_row docroom) h=$(storm_row hocuspocus)
    if [ -n "$d" ] && [ -n "$h" ]; then
        echo "- docroom ÷ Hocuspocus, RSS growth: $(goal_of "$(ratio "$(rss_growth "$d")" "$(rss_growth "$h")")" 0.25)"
        echo "- docroom ÷ Hocuspocus, time to the last sync:" \
            "$(goal_of "$(ratio "$(jq -r '.join_storm.time_to_last_sync_secs // "n/a"' "$(cut -f6 <<<"$d")")" \
                "$(jq -r '.join_storm.time_to_last_sync_secs // "n/a"' "$(cut -f6 <<<"$h")")")" 0.7)"
        echo
    fi
}
