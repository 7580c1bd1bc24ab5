# shellcheck shell=bash
# Sourced by tools/bench-compare: the workloads of issue 12 item 7, where work moves into Redis
# and CPU is therefore counted over the server's processes *and* Redis:
#
#   W6  large documents: 10 documents seeded with 1 MiB of text (1 KiB inserts), one typist at
#       5 updates/s and one receiver each; the same on 4 KiB documents for the ratio.
#   W7  W1 (500 documents x 4 clients) with each document's clients split 2 + 2 over two
#       replicas, beside the same workload on one replica.
#   W2s W2 (1 document x 200 clients) split over two replicas, beside one replica.
#
# docroom and Hocuspocus only (the reference y-websocket server has no way to run replicas).
# Each run gets a private redis-server on a free port (the shared one at 6379 serves other
# work too, so its CPU and traffic would not be ours): its CPU comes from /proc, the bytes
# written to it from `INFO stats` total_net_input_bytes. Both, and the servers' CPU, are
# sampled by the load generator's --window-hook exactly as the measured window opens and
# closes, so seeding, connecting and the initial sync are not counted. Replicas of docroom share
# the run's database and key prefix and differ in DOCROOM_REPLICA_ID, port and data dir;
# Hocuspocus instances share the private Redis (extension-redis) and the table.
#
# Environment (all optional):
#   BENCH_W6_SECS (30), BENCH_W6_WARMUP_SECS (15: longer than docroom's 10 s flush period, so
#   the seed's compaction and Hocuspocus's debounced store of it are done before the window),
#   BENCH_W6_SIZES ("1048576 4096": the large size first, the small one last),
#   BENCH_W7_SECS (60), BENCH_W2S_SECS (60),
#   BENCH_SCALE_REPLICAS ("1 2"): the replica counts W7 and W2s run ("1": W1 or W2 on one
#   replica only, with Redis's CPU counted, e.g. to compare two builds of the service).
#   BENCH_SCALE_ROUNDS (1): W7 and W2s run one replica then two this many times in a row (each
#   round fresh servers and Redis); the report gives every round's ratios and their median, which
#   a single noisy pair of windows on a shared machine cannot be trusted to show.
#   BENCH_SCALE_DOCROOM_ENV  extra VAR=VALUE words for every docroom replica of these runs (for
#   experiments, e.g. "DOCROOM__ROOMS__YJS_SAVE_INTERVAL_MS=20"; the report names them).
#   BENCH_SCALE_SHARE_CORES (1): N docroom replicas on this one machine share its cores as N
#   pods would share N nodes' worth: each runs cores / N HTTP workers (at least one), so one
#   replica and two run the same number of worker threads in all. 0: every replica runs one
#   worker per core (two replicas then run twice the threads on the same cores).

readonly W6_SECS=${BENCH_W6_SECS:-30} W6_WARMUP=${BENCH_W6_WARMUP_SECS:-15}
readonly W6_SIZES=${BENCH_W6_SIZES:-1048576 4096}
read -r -a SCALE_DOCROOM_ENV <<<"${BENCH_SCALE_DOCROOM_ENV:-}"
readonly SCALE_DOCROOM_ENV
readonly W7_SECS=${BENCH_W7_SECS:-60} W2S_SECS=${BENCH_W2S_SECS:-60}
readonly SCALE_REPLICAS=${BENCH_SCALE_REPLICAS:-1 2}
readonly SHARE_CORES=${BENCH_SCALE_SHARE_CORES:-1}
readonly SCALE_ROUNDS=${BENCH_SCALE_ROUNDS:-1}

SCALE_SERVERS=""
for s in $SERVERS; do
    case $s in docroom | hocuspocus) SCALE_SERVERS+="$s " ;; esac
done
readonly SCALE_SERVERS
# One line per run: name workload server_cpu_s redis_cpu_s redis_bytes_in peak_rss_kb json
readonly SCALE_RESULTS=$WORK/scale.tsv
: >"$SCALE_RESULTS"

# The window hook: appends "PHASE server_ticks redis_ticks redis_input_bytes" to OUT; at the
# end also keeps Redis's per-command counts and slow log (the evidence for where its CPU went).
readonly SNAPSHOT=$WORK/snapshot
cat >"$SNAPSHOT" <<'EOF'
#!/usr/bin/env bash
out=$1 redis_pid=$2 redis_port=$3
shift 3
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
t=0
for p in "$@"; do t=$((t + $(ticks "$p"))); done
bytes=$(redis-cli -p "$redis_port" info stats | tr -d '\r' | awk -F: '$1 == "total_net_input_bytes" { print $2 }')
echo "${LOADGEN_PHASE:-?} $t $(ticks "$redis_pid") $bytes" >>"$out"
if [ "${LOADGEN_PHASE:-}" = end ]; then
    redis-cli -p "$redis_port" info commandstats >"$out.commandstats"
    redis-cli -p "$redis_port" info latencystats >"$out.latencystats"
    redis-cli -p "$redis_port" slowlog get 50 >"$out.slowlog"
fi
EOF
chmod +x "$SNAPSHOT"

PRIV_REDIS_PID="" PRIV_REDIS_PORT=""

start_private_redis() { # NAME
    PRIV_REDIS_PORT=$(free_port)
    redis-server --port "$PRIV_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --slowlog-log-slower-than 1000 --slowlog-max-len 128 --dir "$WORK" --logfile "$OUT_DIR/$1.redis.log" &
    PRIV_REDIS_PID=$!
    PIDS+=("$PRIV_REDIS_PID")
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$PRIV_REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$PRIV_REDIS_PID" 2>/dev/null || die "private redis-server exited; see $OUT_DIR/$1.redis.log"
        sleep 0.1
    done
    die "private redis-server did not answer within 10 s"
}

# Starts COUNT instances of SERVER on the private Redis; sets REPLICA_PIDS, URL_ARGS, PROTOCOL.
start_replicas() { # SERVER NAME COUNT [VAR=VALUE...]
    local server=$1 name=$2 count=$3 i
    shift 3
    REPLICA_PIDS=() REPLICA_ADDRS=() URL_ARGS=()
    local share=()
    if [ "$SHARE_CORES" = 1 ]; then
        local workers=$(($(nproc) / count))
        share=(DOCROOM__SERVER__WORKERS=$((workers > 0 ? workers : 1)))
    fi
    for i in $(seq 1 "$count"); do
        case $server in
            docroom)
                start_docroom "$name.r$i" DOCROOM_REDIS_URL="redis://127.0.0.1:$PRIV_REDIS_PORT" \
                    DOCROOM_REPLICA_ID="bench-$i" "${share[@]}" "${SCALE_DOCROOM_ENV[@]}" "$@"
                PROTOCOL=yjs
                URL_ARGS+=(--url "ws://$SERVER_ADDR/yjs/{doc}")
                ;;
            hocuspocus)
                start_node "$name.r$i" hocuspocus-server.js DATABASE_URL="$DB_URL" \
                    REDIS_URL="redis://127.0.0.1:$PRIV_REDIS_PORT" REDIS_PREFIX="$HOCUS_PREFIX"
                PROTOCOL=hocuspocus
                URL_ARGS+=(--url "ws://$SERVER_ADDR")
                ;;
        esac
        REPLICA_PIDS+=("$SERVER_PID") REPLICA_ADDRS+=("$server $SERVER_ADDR")
    done
}

# Runs the load generator against the started replicas; records their CPU and the private
# Redis's CPU and input bytes over the measured window, and the replicas' summed peak RSS.
measure_window() { # NAME WORKLOAD LOADGEN-ARGS...
    local name=$1 workload=$2
    shift 2
    local json=$OUT_DIR/$name.$workload.json snap=$OUT_DIR/$name.$workload.window hwm=0 p
    : >"$snap"
    log "$name $workload: docroom-loadgen $*"
    "$LOADGEN" --json --label "$name" \
        --window-hook "$SNAPSHOT $snap $PRIV_REDIS_PID $PRIV_REDIS_PORT ${REPLICA_PIDS[*]}" \
        "$@" >"$json" 2>"$OUT_DIR/$name.$workload.loadgen.log" ||
        log "$name $workload: load generator exited non-zero (see $OUT_DIR/$name.$workload.loadgen.log)"
    for p in "${REPLICA_PIDS[@]}"; do
        hwm=$((hwm + $(status_kb "$p" VmHWM)))
    done
    # Each docroom replica's metrics (save durations and waits, log read lag) as the run ends.
    local i=0 addr
    for addr in "${REPLICA_ADDRS[@]}"; do
        i=$((i + 1))
        [[ $addr == docroom\ * ]] || continue
        curl -fsS "http://${addr#docroom }/metrics" >"$OUT_DIR/$name.$workload.r$i.metrics" 2>/dev/null || true
    done
    awk -v n="$name" -v w="$workload" -v h="$hwm" -v j="$json" -v t="$CLK_TCK" '
        $1 == "start" { s = $2; r = $3; b = $4 }
        $1 == "end" { es = $2; er = $3; eb = $4 }
        END {
            if (es == "") printf "%s\t%s\tn/a\tn/a\tn/a\t%s\t%s\n", n, w, h, j
            else printf "%s\t%s\t%.2f\t%.2f\t%d\t%s\t%s\n", n, w, (es - s) / t, (er - r) / t, eb - b, h, j
        }' "$snap" >>"$SCALE_RESULTS"
    tail -n 14 "$OUT_DIR/$name.$workload.loadgen.log" | grep '^|' >&2 || true
}

stop_replicas() {
    local p
    for p in "${REPLICA_PIDS[@]}"; do stop_pid "$p"; done
    stop_pid "$PRIV_REDIS_PID" 10
}

run_scale_workloads() {
    local server size n
    if has "$WORKLOADS" w6; then
        for size in $W6_SIZES; do
            for server in $SCALE_SERVERS; do
                start_private_redis "$server.w6-$size"
                # Default settings: a Yjs document may grow to 64 MiB (SPEC §5).
                start_replicas "$server" "$server.w6-$size" 1
                measure_window "$server" "w6-$size" --preset w6 --seed-bytes "$size" \
                    --protocol "$PROTOCOL" "${URL_ARGS[@]}" --duration-secs "$W6_SECS" \
                    --warmup-secs "$W6_WARMUP" --doc-prefix "bc-$RUN_ID-w6-$size"
                stop_replicas
            done
        done
    fi
    local workload preset secs
    for workload in w7 w2s; do
        has "$WORKLOADS" "$workload" || continue
        case $workload in
            w7) preset=w1 secs=$W7_SECS ;;
            w2s) preset=w2 secs=$W2S_SECS ;;
        esac
        local round run
        for server in $SCALE_SERVERS; do
            for round in $(seq 1 "$SCALE_ROUNDS"); do
                for n in $SCALE_REPLICAS; do
                    run=$(round_name "$workload-$n" "$round")
                    start_private_redis "$server.$run"
                    start_replicas "$server" "$server.$run" "$n"
                    measure_window "$server" "$run" --preset "$preset" --protocol "$PROTOCOL" \
                        "${URL_ARGS[@]}" --duration-secs "$secs" --warmup-secs "$WARMUP" \
                        --doc-prefix "bc-$RUN_ID-$run"
                    stop_replicas
                done
            done
        done
    done
}

# A W7/W2s run's name: WORKLOAD-N for the first round, WORKLOAD-N.rK for round K.
round_name() { # NAME ROUND
    if [ "$2" -eq 1 ]; then echo "$1"; else echo "$1.r$2"; fi
}

# --- the report ---------------------------------------------------------------------------------

scale_row() { awk -F'\t' -v n="$1" -v w="$2" '$1 == n && $2 == w' "$SCALE_RESULTS"; }
# Server + Redis CPU µs per measured update of a scale.tsv row.
cpu_per_update() { # ROW
    [ -n "$1" ] || {
        echo n/a
        return
    }
    local json
    json=$(cut -f7 <<<"$1")
    jq -r --arg s "$(cut -f3 <<<"$1")" --arg r "$(cut -f4 <<<"$1")" \
        'if ($s == "n/a") or (.updates.sent == 0) then "n/a" else (($s | tonumber) + ($r | tonumber)) * 1e6 / .updates.sent | round end' "$json"
}
bytes_per_update() { # ROW
    [ -n "$1" ] || {
        echo n/a
        return
    }
    jq -r --arg b "$(cut -f5 <<<"$1")" \
        'if ($b == "n/a") or (.updates.sent == 0) then "n/a" else ($b | tonumber) / .updates.sent | round end' "$(cut -f7 <<<"$1")"
}
size_label() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%g MiB", b / 1048576; else if (b >= 1024) printf "%g KiB", b / 1024; else printf "%d B", b }'; }
scale_cells() { # ROW: the columns shared by every scale table
    local line=$1 json
    json=$(cut -f7 <<<"$line")
    echo "$(num "$json" .updates.sent_per_sec) | $(jq -r 'if .broadcasts.expected > 0 then (.broadcasts.received * 10000 / .broadcasts.expected | round / 100 | tostring) + "%" else "n/a" end' "$json") | $(num "$json" .broadcasts.missing)" \
        "| $(num "$json" .broadcast_latency_ms.p50) / $(num "$json" .broadcast_latency_ms.p95) / $(num "$json" .broadcast_latency_ms.p99) / $(num "$json" .broadcast_latency_ms.max)" \
        "| $(cut -f3 <<<"$line") | $(cut -f4 <<<"$line") | $(cpu_per_update "$line") | $(bytes_per_update "$line")" \
        "| $(awk -v k="$(cut -f6 <<<"$line")" 'BEGIN { printf "%.1f", k / 1024 }') | $(jq -r '"\(.errors) / \(.connections.dropped + .connections.failed)"' "$json") |"
}
readonly SCALE_HEADER="updates/s | delivered | missing broadcasts | broadcast p50 / p95 / p99 / max ms | server CPU s | Redis CPU s | CPU µs per update (server + Redis) | Redis bytes in per update | peak RSS MiB | errors / drops |"
readonly SCALE_RULE="--- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
ratio_goal() { # A B GOAL: "**A/B** (goal ≤ GOAL: met|not met)"
    goal_of "$(ratio "$1" "$2")" "$3"
}

report_scale() {
    [ -s "$SCALE_RESULTS" ] || return 0
    echo "## Scale workloads (issue 12): how CPU is counted"
    echo
    echo "CPU below is counted over the measured window only (sampled as it opens and closes), over"
    echo "the server's processes and a private redis-server of the run; Redis bytes in: its"
    echo "total_net_input_bytes over the window. Delivered: broadcast receipts ÷ expected."
    [ "${#SCALE_DOCROOM_ENV[@]}" -eq 0 ] || echo "docroom replicas ran with: ${SCALE_DOCROOM_ENV[*]}."
    echo
    local size s line
    if has "$WORKLOADS" w6; then
        echo "## W6 — large documents (10 documents, 1 typist at 5 updates/s + 1 receiver each)"
        echo
        echo "| server | document | $SCALE_HEADER"
        echo "| --- | --- | $SCALE_RULE"
        for size in $W6_SIZES; do
            for s in $SCALE_SERVERS; do
                line=$(scale_row "$s" "w6-$size")
                [ -n "$line" ] && echo "| $s | $(size_label "$size") | $(scale_cells "$line")"
            done
        done
        echo
        local big small d_big d_small h_big h_small
        big=$(awk '{ print $1 }' <<<"$W6_SIZES") small=$(awk '{ print $NF }' <<<"$W6_SIZES")
        d_big=$(cpu_per_update "$(scale_row docroom "w6-$big")")
        d_small=$(cpu_per_update "$(scale_row docroom "w6-$small")")
        h_big=$(cpu_per_update "$(scale_row hocuspocus "w6-$big")")
        h_small=$(cpu_per_update "$(scale_row hocuspocus "w6-$small")")
        echo "- docroom $(size_label "$big") ÷ docroom $(size_label "$small"), CPU per update: $(ratio_goal "$d_big" "$d_small" 1.5)"
        echo "- docroom $(size_label "$big") ÷ Hocuspocus $(size_label "$big"), CPU per update: $(ratio_goal "$d_big" "$h_big" 0.5)"
        echo "- Hocuspocus $(size_label "$big") ÷ Hocuspocus $(size_label "$small"), CPU per update: $(ratio "$h_big" "$h_small")"
        echo "- docroom Redis bytes in per update, $(size_label "$big") ÷ $(size_label "$small"):" \
            "$(ratio "$(bytes_per_update "$(scale_row docroom "w6-$big")")" "$(bytes_per_update "$(scale_row docroom "w6-$small")")")"
        echo
    fi
    local workload title
    for workload in w7 w2s; do
        has "$WORKLOADS" "$workload" || continue
        case $workload in
            w7) title="W7 — W1 (500 documents × 4 clients, 1 update/s each) on one replica and split 2 + 2 over two" ;;
            w2s) title="W2s — W2 (1 document × 200 clients, 20 writing 20/s) on one replica and split over two" ;;
        esac
        echo "## $title"
        echo
        echo "| server | replicas | $SCALE_HEADER"
        echo "| --- | --- | $SCALE_RULE"
        local n round label
        for s in $SCALE_SERVERS; do
            for round in $(seq 1 "$SCALE_ROUNDS"); do
                for n in 1 2; do
                    line=$(scale_row "$s" "$(round_name "$workload-$n" "$round")")
                    label=$n
                    [ "$SCALE_ROUNDS" -eq 1 ] || label="$n (round $round)"
                    [ -n "$line" ] && echo "| $s | $label | $(scale_cells "$line")"
                done
            done
        done
        echo
        echo "| server | round | delivered, two replicas | broadcast p99 two ÷ one | CPU per update two ÷ one |"
        echo "| --- | --- | --- | --- | --- |"
        local one two p99s cpus p99 cpu delivered
        for s in $SCALE_SERVERS; do
            p99s="" cpus="" delivered="100% (goal 100%: met)"
            for round in $(seq 1 "$SCALE_ROUNDS"); do
                one=$(scale_row "$s" "$(round_name "$workload-1" "$round")")
                two=$(scale_row "$s" "$(round_name "$workload-2" "$round")")
                [ -n "$one" ] && [ -n "$two" ] || continue
                p99=$(ratio "$(jq -r '.broadcast_latency_ms.p99 // "n/a"' "$(cut -f7 <<<"$two")")" "$(jq -r '.broadcast_latency_ms.p99 // "n/a"' "$(cut -f7 <<<"$one")")")
                cpu=$(ratio "$(cpu_per_update "$two")" "$(cpu_per_update "$one")")
                p99s+="$p99 " cpus+="$cpu "
                line=$(jq -r 'if .broadcasts.missing == 0 and .broadcasts.expected > 0 then "100% (goal 100%: met)" else "\(.broadcasts.received) of \(.broadcasts.expected) (goal 100%: not met)" end' "$(cut -f7 <<<"$two")")
                [[ $line == 100%* ]] || delivered=$line
                echo "| $s | $round | $line | $(goal_of "$p99" 1.5) | $(goal_of "$cpu" 1.3) |"
            done
            [ "$SCALE_ROUNDS" -gt 1 ] && [ -n "$p99s" ] &&
                echo "| $s | median of $SCALE_ROUNDS | $delivered | $(goal_of "$(median_of $p99s)" 1.5) | $(goal_of "$(median_of $cpus)" 1.3) |"
        done
        echo
    done
}

# The median of the numbers given as arguments ("n/a" if any is; bench-compare's `median` reads
# them from stdin).
median_of() {
    printf '%s\n' "$@" | sort -g | awk '/n\/a/ { na = 1 } { v[NR] = $1 } END {
        if (na || NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "**R** (goal ≤ GOAL: met|not met)" for a ratio R already computed.
goal_of() { # R GOAL
    if [ "$1" = n/a ]; then
        echo "n/a"
    else
        echo "**$1** (goal ≤ $2: $(awk -v r="$1" -v g="$2" 'BEGIN { print (r <= g) ? "met" : "not met" }'))"
    fi
}
