# shellcheck shell=bash
# Sourced by tools/bench-compare: the report (results.md) of every workload it ran, from the
# runs' JSON and the rows in RESULTS; W6–W8 add theirs (report_scale, report_storm).

readonly DELIVERED='.broadcasts.received_per_sec / ([.plan.clients - 1, 1] | max)'
row_of() { awk -F'\t' -v n="$1" -v w="$2" '$1 == n && $2 == w' "$RESULTS"; }
num() { jq -r "$2 // \"n/a\" | if type == \"number\" then (. * 100 | round / 100) else . end" "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%.2f", a / b }'; }

# "delivered/s | CPU efficiency | broadcast p99 | peak RSS" of run A against run B (RESULTS lines).
ratios() { # LINE-A LINE-B
    local aj acpu ahwm bj bcpu bhwm aper bper
    acpu=$(cut -f3 <<<"$1") ahwm=$(cut -f4 <<<"$1") aj=$(cut -f5 <<<"$1")
    bcpu=$(cut -f3 <<<"$2") bhwm=$(cut -f4 <<<"$2") bj=$(cut -f5 <<<"$2")
    aper=$(jq -r --arg c "$acpu" '($c | tonumber) / ([.updates.sent_total, 1] | max)' "$aj")
    bper=$(jq -r --arg c "$bcpu" '($c | tonumber) / ([.updates.sent_total, 1] | max)' "$bj")
    echo "$(ratio "$(jq -r "$DELIVERED" "$aj")" "$(jq -r "$DELIVERED" "$bj")")" \
        "| $(ratio "$bper" "$aper") | $(ratio "$(jq -r '.broadcast_latency_ms.p99 // "n/a"' "$aj")" "$(jq -r '.broadcast_latency_ms.p99 // "n/a"' "$bj")")" \
        "| $(ratio "$ahwm" "$bhwm")"
}

# CPU µs per update of the seconds SUM (an awk expression, "n/a" in it: n/a) for a run's JSON.
per_update() { # SUM JSON
    [[ $1 == *n/a* ]] && echo n/a && return
    jq -r --argjson c "$(awk "BEGIN { print $1 }")" '$c * 1e6 / ([.updates.sent_total, 1] | max) | round' "$2"
}

# CPU seconds per update sent of a RESULTS line, over its columns COLS ("3 6": server + Redis).
per() { # LINE COLS SENT
    awk -F'\t' -v cols="$2" -v sent="$3" '{
        n = split(cols, c, " ")
        for (i = 1; i <= n; i++) {
            if ($c[i] == "n/a") { print "n/a"; exit }
            s += $c[i]
        }
        printf "%.9f", s / (sent > 0 ? sent : 1)
    }' <<<"$1"
}

# What webhooks cost: docroom with webhooks ÷ docroom, CPU per update, and what was delivered.
report_webhooks() { # WORKLOAD
    local on off jon joff f
    on=$(row_of docroom-webhooks "$1") off=$(row_of docroom "$1")
    [ -n "$on" ] && [ -n "$off" ] || return 0
    jon=$(cut -f5 <<<"$on") joff=$(cut -f5 <<<"$off")
    local son soff
    son=$(jq -r .updates.sent_total "$jon") soff=$(jq -r .updates.sent_total "$joff")
    echo "Webhooks on ÷ off (docroom with webhooks ÷ docroom), CPU per update:"
    echo
    echo "| server | server + Redis (goal ≤ 1.1) | server + Redis + PostgreSQL backends |"
    echo "| --- | --- | --- |"
    echo "| $(ratio "$(per "$on" 3 "$son")" "$(per "$off" 3 "$soff")") | $(ratio "$(per "$on" "3 6" "$son")" "$(per "$off" "3 6" "$soff")")" \
        "| $(ratio "$(per "$on" "3 6 7" "$son")" "$(per "$off" "3 6 7" "$soff")") |"
    echo
    f=$OUT_DIR/docroom-webhooks.$1.webhook-metrics
    [ -s "$f" ] && echo "docroom's webhook counters as the load ended: $(awk '/^docroom_webhooks_(delivered_total|pending|failed_total|window_writes_total)/ { printf "%s%s %s", sep, $1, $2; sep = ", " }' "$f")."
    f=$OUT_DIR/docroom-webhooks.$1.receiver.json
    [ -s "$f" ] && echo "The receiver's requests (deliveries, to the server's stop): $(jq -r '"\(.requests) (" + (.events | to_entries | map("\(.key) \(.value)") | join(", ")) + ")"' "$f")."
    echo
}

# What history costs: docroom (history on, the default) ÷ docroom without history, CPU per
# update, and the versions cut.
report_history() { # WORKLOAD
    local on off jon joff son soff f
    on=$(row_of docroom "$1") off=$(row_of docroom-nohistory "$1")
    [ -n "$on" ] && [ -n "$off" ] || return 0
    jon=$(cut -f5 <<<"$on") joff=$(cut -f5 <<<"$off")
    son=$(jq -r .updates.sent_total "$jon") soff=$(jq -r .updates.sent_total "$joff")
    echo "History on ÷ off (docroom ÷ docroom without history), CPU per update (goal ≤ 1.1):"
    echo
    echo "| server | server + Redis | server + Redis + PostgreSQL backends |"
    echo "| --- | --- | --- |"
    echo "| $(ratio "$(per "$on" 3 "$son")" "$(per "$off" 3 "$soff")") | $(ratio "$(per "$on" "3 6" "$son")" "$(per "$off" "3 6" "$soff")")" \
        "| $(ratio "$(per "$on" "3 6 7" "$son")" "$(per "$off" "3 6 7" "$soff")") |"
    echo
    f=$OUT_DIR/docroom.$1.versions
    [ -s "$f" ] && echo "Versions cut (rows of document_versions for the run's documents, the server stopped): docroom $(tr -d ' \n' <"$f"), docroom without history $(tr -d ' \n' <"$OUT_DIR/docroom-nohistory.$1.versions" 2>/dev/null || echo n/a)."
    echo
}

report() {
    echo "# tools/bench-compare, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ { print $2 }') GiB;" \
        "the server and the load generator share the cores."
    echo "Measured seconds: W1 $W1_SECS, W2 $W2_SECS, W1x $W1X_SECS per step, W3 $W3_SECS, W4 $W4_SECS (warmup $WARMUP)."
    echo
    echo "updates/s: sent by the clients; delivered/s: updates that reached every other member of"
    echo "their room (broadcast receipts ÷ (clients per document − 1)); CPU is the server process's"
    echo "user + system time over the whole run (connecting included) ÷ updates sent; Redis CPU is"
    echo "the run's private redis-server's over the same span, PostgreSQL CPU that of the backends"
    echo "connected to the run's database (neither is in \"CPU µs per update\")."
    echo
    local w
    for w in w1 w2 "${ladder[@]}"; do
        has "$WORKLOADS" "${w%%-*}" || continue
        case $w in
            w1x-*) echo "## W1x at ${w#w1x-} updates/s per client ($(awk -v r="${w#w1x-}" 'BEGIN { print r * 2000 }') offered updates/s)" ;;
            *) echo "## ${w^^}" ;;
        esac
        echo
        echo "| server | updates/s | delivered/s | missing broadcasts | broadcast p50 / p95 / p99 / max ms | ack p99 ms | server CPU s | CPU µs per update | ÷ relay's (goal for docroom ≤ 1.5) | Redis CPU s | CPU µs per update (server + Redis) | PostgreSQL CPU s | peak RSS MiB | errors / drops |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        local s relay_per=n/a relay_line
        relay_line=$(row_of relay "$w")
        [ -z "$relay_line" ] ||
            relay_per=$(per "$relay_line" 3 "$(jq -r .updates.sent_total "$(cut -f5 <<<"$relay_line")")")
        for s in $SERVERS; do
            local line json cpu hwm redis pg
            line=$(row_of "$s" "$w")
            [ -n "$line" ] || continue
            cpu=$(cut -f3 <<<"$line") hwm=$(cut -f4 <<<"$line") json=$(cut -f5 <<<"$line")
            redis=$(cut -f6 <<<"$line") pg=$(cut -f7 <<<"$line")
            echo "| $(label_of "$s") | $(num "$json" .updates.sent_per_sec) | $(num "$json" "$DELIVERED") | $(num "$json" .broadcasts.missing)" \
                "| $(num "$json" .broadcast_latency_ms.p50) / $(num "$json" .broadcast_latency_ms.p95) / $(num "$json" .broadcast_latency_ms.p99) / $(num "$json" .broadcast_latency_ms.max)" \
                "| $(num "$json" .ack_latency_ms.p99) | $cpu | $(per_update "$cpu" "$json")" \
                "| $(ratio "$(per "$line" 3 "$(jq -r .updates.sent_total "$json")")" "$relay_per")" \
                "| $redis | $(per_update "$cpu + $redis" "$json") | $pg" \
                "| $(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }') | $(jq -r '"\(.errors) / \(.connections.dropped + .connections.failed)"' "$json") |"
        done
        echo
        report_webhooks "$w"
        report_history "$w"
        local d peers=()
        d=$(row_of docroom "$w")
        for s in $SERVERS; do
            case $s in docroom | docroom-hocuspocus | docroom-webhooks | docroom-nohistory) continue ;; esac
            [ -z "$(row_of "$s" "$w")" ] || peers+=("$s")
        done
        if [ -n "$d" ] && [ "${#peers[@]}" -gt 0 ]; then
            echo "docroom's ratios (docroom ÷ peer; CPU per update is peer ÷ docroom, i.e. how many times less CPU docroom spends):"
            echo
            echo "| vs | delivered/s | CPU efficiency | broadcast p99 | peak RSS |"
            echo "| --- | --- | --- | --- | --- |"
            for s in "${peers[@]}"; do
                echo "| $s | $(ratios "$d" "$(row_of "$s" "$w")") |"
            done
            echo
        fi
        # The same client protocol on both sides: docroom's /hocuspocus beside Hocuspocus.
        local dh h
        dh=$(row_of docroom-hocuspocus "$w") h=$(row_of hocuspocus "$w")
        if [ -n "$dh" ] && [ -n "$h" ]; then
            echo "The same client protocol: docroom over the Hocuspocus protocol ÷ Hocuspocus (CPU efficiency is Hocuspocus's CPU per update ÷ docroom's; docroom's SyncStatus ack means stored, Hocuspocus's applied in memory):"
            echo
            echo "| vs | delivered/s | CPU efficiency | broadcast p99 | peak RSS | ack p99 |"
            echo "| --- | --- | --- | --- | --- | --- |"
            echo "| hocuspocus | $(ratios "$dh" "$h") | $(ratio "$(jq -r '.ack_latency_ms.p99 // "n/a"' "$(cut -f5 <<<"$dh")")" "$(jq -r '.ack_latency_ms.p99 // "n/a"' "$(cut -f5 <<<"$h")")") |"
            echo
        fi
    done
    if has "$WORKLOADS" w1x; then
        echo "## W1x: highest sustained rate"
        echo
        echo "Sustained: every broadcast delivered and broadcast p99 under $SUSTAINED_P99_MS ms."
        echo
        echo "W1 counts as the ladder's first step (1 update/s per client)."
        echo
        echo "| server | highest sustained offered updates/s | broadcast p99 there, ms | docroom ÷ server |"
        echo "| --- | --- | --- | --- |"
        local s best bestp99
        local -A bests=() p99s=()
        for s in $SERVERS; do
            best=0 bestp99=n/a
            for w in w1 "${ladder[@]}"; do
                local line json rate
                line=$(row_of "$s" "$w")
                [ -n "$line" ] || continue
                json=$(cut -f5 <<<"$line")
                rate=1
                [ "$w" = w1 ] || rate=${w#w1x-}
                if jq -e --argjson lim "$SUSTAINED_P99_MS" \
                    '.broadcasts.missing == 0 and .errors == 0 and (.broadcast_latency_ms.p99 // 1e9) < $lim' \
                    "$json" >/dev/null; then
                    if awk -v r="$rate" -v b="$best" 'BEGIN { exit !(r * 2000 > b) }'; then
                        best=$(awk -v r="$rate" 'BEGIN { print r * 2000 }')
                        bestp99=$(num "$json" .broadcast_latency_ms.p99)
                    fi
                fi
            done
            [ -n "$(row_of "$s" w1)$(row_of "$s" "${ladder[0]:-}")" ] || continue
            bests[$s]=$best p99s[$s]=$bestp99
        done
        for s in $SERVERS; do
            [ -n "${bests[$s]:-}" ] || continue
            case $s in
                docroom) echo "| $s | ${bests[$s]} | ${p99s[$s]} | |" ;;
                # Its own kind of row: docroom over the same protocol as Hocuspocus, beside it.
                docroom-hocuspocus) echo "| $(label_of "$s") | ${bests[$s]} | ${p99s[$s]} | ÷ hocuspocus: $(ratio "${bests[$s]}" "${bests[hocuspocus]:-}") |" ;;
                *) echo "| $s | ${bests[$s]} | ${p99s[$s]} | $(ratio "${bests[docroom]:-}" "${bests[$s]}") |" ;;
            esac
        done
        echo
        echo "(A 0 means not even the lowest step was sustained; docroom sustaining the highest step"
        echo "means its ratio is a lower bound.)"
        echo
    fi
    if has "$WORKLOADS" w3 && [ -n "$(row_of docroom w3r1)" ]; then
        local r j saves=() rb
        echo "## W3 (64 JSON clients on 64 documents, closed loop; $W3_ROUNDS rounds in turn with redis-benchmark)"
        echo
        echo "| round | docroom saves/s | ack p50 / p99 ms | server CPU s | redis-benchmark SET -c 64 -P 1 /s | ratio |"
        echo "| --- | --- | --- | --- | --- | --- |"
        for r in $(seq 1 $W3_ROUNDS); do
            j=$(row_of docroom "w3r$r" | cut -f5)
            [ -n "$j" ] || continue
            saves+=("$(jq -r .updates.acked_per_sec "$j")")
            rb=$(sed -n "${r}p" "$OUT_DIR/redis-benchmark.txt")
            echo "| $r | $(num "$j" .updates.acked_per_sec) | $(num "$j" .ack_latency_ms.p50) / $(num "$j" .ack_latency_ms.p99) | $(row_of docroom "w3r$r" | cut -f3) | ${rb:-n/a} | $(ratio "$(jq -r .updates.acked_per_sec "$j")" "$rb") |"
        done
        local ms mr
        ms=$(printf '%s\n' "${saves[@]}" | median)
        mr=$(median <"$OUT_DIR/redis-benchmark.txt")
        echo "| median | $ms | | | $mr | |"
        echo
        echo "Ratio of the medians, docroom ÷ redis-benchmark: **$(ratio "$ms" "$mr")** (goal ≥ 0.5)."
        echo
    fi
    if has "$WORKLOADS" w4 && [ -n "$(row_of docroom w4)" ]; then
        local j before held
        j=$(row_of docroom w4 | cut -f5)
        before=$(cat "$OUT_DIR/docroom.w4.rss-before-kb" 2>/dev/null || echo 0)
        held=$(cat "$OUT_DIR/docroom.w4.rss-held-kb" 2>/dev/null || echo 0)
        echo "## W4 (10,000 idle JSON connections, heartbeats only)"
        echo
        echo "| opened | failed | dropped | RSS before | RSS held | per connection | peak RSS | server CPU s |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
        echo "| $(jq -r .connections.opened "$j") | $(jq -r .connections.failed "$j") | $(jq -r .connections.dropped "$j")" \
            "| $(awk -v k="$before" 'BEGIN { printf "%.1f MiB", k / 1024 }') | $(awk -v k="$held" 'BEGIN { printf "%.1f MiB", k / 1024 }')" \
            "| $(awk -v a="$before" -v b="$held" -v n="$(jq -r .connections.opened "$j")" 'BEGIN { if (n > 0 && b > 0) printf "%.1f KiB", (b - a) / n; else print "n/a" }')" \
            "| $(awk -v k="$(row_of docroom w4 | cut -f4)" 'BEGIN { printf "%.1f MiB", k / 1024 }') | $(row_of docroom w4 | cut -f3) |"
        echo
    fi
    if has "$WORKLOADS" w5 && [ -s "$OUT_DIR/docroom.w5.flushes" ]; then
        local flushes psql_ms rows secs ms
        flushes=$(cut -f2 "$OUT_DIR/docroom.w5.flushes" | tr '\n' ' ')
        secs=$(cut -f2 "$OUT_DIR/docroom.w5.flushes" | median)
        flushed=$(cut -f1 "$OUT_DIR/docroom.w5.flushes" | sort -n | head -n 1)
        # Each psql run prints three timings: create temp table, count, the upsert.
        psql_ms=$(grep -E '^Time:' "$OUT_DIR/psql-upsert.txt" | awk 'NR % 3 == 0 { print $2 }')
        ms=$(printf '%s\n' $psql_ms | median)
        rows=$(awk '/rows/ { getline; getline; print $1; exit }' "$OUT_DIR/psql-upsert.txt")
        echo "## W5 (one flush of 10,000 dirty documents; median of $W5_ROUNDS)"
        echo
        echo "| | rows | seconds (median) | each run | rows/s |"
        echo "| --- | --- | --- | --- | --- |"
        echo "| docroom POST /admin/flusher/flush | $flushed | $secs | $flushes | $(awk -v n="$flushed" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') |"
        echo "| one batched upsert in psql | ${rows:-?} | $(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }') | $(printf '%s ' $psql_ms)(ms) | $(awk -v n="${rows:-0}" -v m="$ms" 'BEGIN { if (m > 0) printf "%.0f", n / (m / 1000); else print "n/a" }') |"
        echo
        echo "Ratio docroom ÷ direct upsert: **$(awk -v n="$flushed" -v s="$secs" -v r="${rows:-0}" -v m="$ms" 'BEGIN { if (s > 0 && m > 0 && r > 0) printf "%.2f", (n / s) / (r / (m / 1000)); else print "n/a" }')** (goal ≥ 0.7)."
        echo
    fi
    report_scale
    report_storm
}

