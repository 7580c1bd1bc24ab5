# shellcheck shell=bash
# Sourced by tools/bench-compare: the workloads of the stores, each beside the bare store
# command it is measured against:
#
#   W3  save throughput beside redis-benchmark's SETs (three rounds, medians);
#   W4  idle scale: 10,000 connections held, memory per connection;
#   W5  one flush of 10,000 dirty documents beside one batched upsert in psql.
#
# Uses bench-compare's helpers and settings; its report (tools/bench-report.bash) reads what
# these leave in OUT_DIR.

readonly W3_ROUNDS=3
readonly W5_ROUNDS=3

run_store_workloads() {
    # --- W3: save throughput beside redis-benchmark ------------------------------------------------

    # Three rounds, docroom and redis-benchmark in turn (the same docroom process throughout), so a
    # slow spell on this shared machine hits both sides; medians are reported.
    if has "$WORKLOADS" w3; then
        # Closed loop sends as fast as acks come back: lift the per-connection message budget.
        start_docroom docroom.w3 DOCROOM__LIMITS__MESSAGES_PER_SEC=1000000000 \
            DOCROOM__LIMITS__MESSAGE_BURST=1000000000
        host_port=${REDIS_URL#redis://}
        : >"$OUT_DIR/redis-benchmark.txt"
        for round in $(seq 1 $W3_ROUNDS); do
            measure docroom "w3r$round" --preset w3 --url "ws://$SERVER_ADDR/docs/{doc}/ws" \
                --duration-secs "$W3_SECS" --warmup-secs "$WARMUP" --doc-prefix "bc-$RUN_ID-w3"
            bytes=$(jq -r '.plan.payload_bytes + 120' "$OUT_DIR/docroom.w3r$round.json")
            log "redis-benchmark: SET, 64 clients, no pipelining, ${bytes}-byte values, own key prefix"
            redis-benchmark -h "${host_port%%:*}" -p "${host_port##*:}" -c 64 -P 1 -n 300000 -r 100000 -q \
                SET "bench-compare-$RUN_ID-redis-benchmark:__rand_int__" "$(head -c "$bytes" /dev/zero | tr '\0' x)" \
                2>/dev/null | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -n 1 |
                awk '{ print $1 }' >>"$OUT_DIR/redis-benchmark.txt"
            delete_keys "bench-compare-$RUN_ID-redis-benchmark:*"
            log "redis-benchmark: $(tail -n 1 "$OUT_DIR/redis-benchmark.txt") SET/s"
        done
        stop_pid "$SERVER_PID"
    fi

    # --- W4: idle scale ------------------------------------------------------------------------------

    if has "$WORKLOADS" w4; then
        start_docroom docroom.w4
        sleep 1
        status_kb "$SERVER_PID" VmRSS >"$OUT_DIR/docroom.w4.rss-before-kb"
        # The steady-state RSS with every connection open: sampled halfway through the hold (the
        # load generator's progress line says "measuring" once every connection is up).
        (
            for _ in $(seq 1 1200); do
                grep -q measuring "$OUT_DIR/docroom.w4.loadgen.log" 2>/dev/null && break
                sleep 0.1
            done
            sleep $((W4_SECS / 2))
            status_kb "$SERVER_PID" VmRSS >"$OUT_DIR/docroom.w4.rss-held-kb" 2>/dev/null || true
        ) &
        PIDS+=($!)
        measure docroom w4 --preset w4 --url "ws://$SERVER_ADDR/docs/{doc}/ws" \
            --duration-secs "$W4_SECS" --doc-prefix "bc-$RUN_ID-w4"
        stop_pid "$SERVER_PID"
    fi

    # --- W5: one flush of 10,000 dirty documents beside one batched upsert in psql ------------------
    #
    # Three rounds on one docroom process (each: 10,000 documents made dirty, one flush), then the
    # first round's rows upserted three times by one psql statement into a fresh table that already
    # holds the same rows `documents` held before that round. Medians are reported: single flushes of
    # ~100 ms move by tens of percent with whatever else PostgreSQL is doing (checkpoints, autovacuum).

    if has "$WORKLOADS" w5; then
        start_docroom docroom.w5 DOCROOM_ADMIN_TOKEN="$ADMIN_TOKEN" \
            DOCROOM__FLUSHER__BASE_PERIOD_MS=3600000 DOCROOM__FLUSHER__ERROR_PERIOD_MS=3600000 \
            DOCROOM__FLUSHER__MAX_PERIOD_MS=3600000
        admin=(-fsS -H "Authorization: Bearer $ADMIN_TOKEN")
        : >"$OUT_DIR/docroom.w5.flushes"
        for round in $(seq 1 $W5_ROUNDS); do
            w5_prefix="bc-$RUN_ID-w5r$round"
            # 10,000 connections, one document each, each writing once (spread over 5 s), then held
            # open so the rooms stay (a room whose last member leaves persists itself at once).
            "$LOADGEN" --json --label docroom --protocol json --url "ws://$SERVER_ADDR/docs/{doc}/ws" \
                --docs 10000 --clients 1 --writers 1 --rate 0.2 --updates-per-writer 1 \
                --warmup-secs 0 --duration-secs 90 --grace-secs 0 --doc-prefix "$w5_prefix" \
                >"$OUT_DIR/docroom.w5r$round.json" 2>"$OUT_DIR/docroom.w5r$round.loadgen.log" &
            loadgen_pid=$!
            PIDS+=("$loadgen_pid")
            pending=0
            for _ in $(seq 1 120); do
                pending=$(curl "${admin[@]}" "http://$SERVER_ADDR/admin/flusher" | jq -r .pending_docs)
                [ "$pending" -ge 10000 ] && break
                sleep 1
            done
            if [ "$round" = 1 ]; then
                # The rows `documents` holds before the measured flush, for the psql comparison.
                psql_bench -c "create table w5_before as select * from documents"
            fi
            log "W5 round $round: $pending dirty documents; one flush"
            curl "${admin[@]}" -X POST -o "$OUT_DIR/docroom.w5r$round.flush.json" -w '%{time_total}' \
                "http://$SERVER_ADDR/admin/flusher/flush" >"$OUT_DIR/docroom.w5r$round.flush-secs"
            printf '%s\t%s\n' "$(jq -r .flushed "$OUT_DIR/docroom.w5r$round.flush.json")" \
                "$(cat "$OUT_DIR/docroom.w5r$round.flush-secs")" >>"$OUT_DIR/docroom.w5.flushes"
            tail -n 1 "$OUT_DIR/docroom.w5.flushes" >&2
            stop_pid "$loadgen_pid" 5
            sleep 2 # the rooms persist nothing more (they are clean) and retire
        done
        stop_pid "$SERVER_PID"
        # The same rows, upserted by one statement straight into a table like `documents` holding
        # what `documents` held before the flush.
        : >"$OUT_DIR/psql-upsert.txt"
        for run in $(seq 1 $W5_ROUNDS); do
            psql_bench -c "create table w5_direct (like documents including all)" \
                -c "insert into w5_direct select * from w5_before" -c "vacuum analyze w5_direct"
            psql_bench -c "\\timing on" \
                -c "create temp table w5_src as select doc_id, kind, content::text as c, state, content_hash from documents where doc_id like 'bc-$RUN_ID-w5r1-%'" \
                -c "select count(*) as rows from w5_src" \
                -c "insert into w5_direct (doc_id, kind, content, state, content_hash, updated_at)
                    select doc_id, kind, c::jsonb, state, content_hash, now() from w5_src
                    on conflict (doc_id) do update
                       set kind = excluded.kind, content = excluded.content, state = excluded.state,
                           content_hash = excluded.content_hash, updated_at = excluded.updated_at
                     where w5_direct.content_hash is distinct from excluded.content_hash" \
                >>"$OUT_DIR/psql-upsert.txt" 2>&1
            psql_bench -c "drop table w5_direct"
        done
        psql_bench -c "drop table w5_before"
        cat "$OUT_DIR/psql-upsert.txt" >&2
    fi
}
