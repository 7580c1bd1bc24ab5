# syntax=docker/dockerfile:1
#
# docroom: multi-stage build.
#   builder: compiles the dependencies in their own cached layer (only the manifests and the
#            lock file decide it), then the workspace's own sources.
#   runtime: debian slim with the one binary, its config/ directory, and a non-root user.
#
#   docker build -t docroom .
#   docker run -p 8080:8080 \
#     -e DOCROOM_REDIS_URL=redis://redis:6379 \
#     -e DOCROOM_DATABASE_URL=postgres://postgres@db:5432/docroom \
#     -v docroom-data:/app/data docroom

FROM rust:1-bookworm AS builder
WORKDIR /build

# --- dependency layer: rebuilt only when a manifest or Cargo.lock changes -------------------
# A workspace member added to Cargo.toml needs its Cargo.toml copied here too.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
# Stub sources. Cargo refuses a manifest whose explicitly declared [[bench]]/[[test]]/
# [[example]]/[[bin]] targets have no file, so each one gets a stand-in too (those outside src/
# stay: only the binary is built here). Afterwards the stub builds of the workspace's own
# crates are forgotten (their fingerprints), so the next stage recompiles just them.
RUN set -eu; \
    mkdir -p src actors/src; \
    echo 'fn main() {}' > src/main.rs; \
    : > actors/src/lib.rs; \
    for manifest in Cargo.toml actors/Cargo.toml; do \
      dir=$(dirname "$manifest"); \
      awk ' \
        function emit() { if (kind != "") print (path != "" ? path : dflt[kind] name ".rs"); kind = ""; name = ""; path = "" } \
        BEGIN { dflt["bench"] = "benches/"; dflt["test"] = "tests/"; dflt["example"] = "examples/"; dflt["bin"] = "src/bin/" } \
        /^[ \t]*\[/ { emit(); if (match($0, /^[ \t]*\[\[(bench|test|example|bin)\]\]/)) { kind = $0; gsub(/[][ \t]/, "", kind) } next } \
        kind != "" && /^[ \t]*name[ \t]*=/ { name = $0; sub(/^[^"]*"/, "", name); sub(/".*/, "", name) } \
        kind != "" && /^[ \t]*path[ \t]*=/ { path = $0; sub(/^[^"]*"/, "", path); sub(/".*/, "", path) } \
        END { emit() }' "$manifest" \
      | while read -r target; do \
          mkdir -p "$dir/$(dirname "$target")"; \
          [ -e "$dir/$target" ] || echo 'fn main() {}' > "$dir/$target"; \
        done; \
    done; \
    cargo build --release --locked --bin docroom; \
    rm -rf target/release/.fingerprint/docroom-* src actors/src

# --- the workspace's own code ---------------------------------------------------------------
COPY src/ src/
COPY actors/src/ actors/src/
COPY migrations/ migrations/
RUN cargo build --release --locked --bin docroom \
    && install -m 0755 target/release/docroom /usr/local/bin/docroom

# --- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# curl for the HEALTHCHECK; ca-certificates for TLS connections to managed Redis/PostgreSQL
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 docroom \
    && useradd --system --uid 10001 --gid docroom --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin docroom

COPY --from=builder /usr/local/bin/docroom /usr/local/bin/docroom
COPY config/ /app/config/
WORKDIR /app
# The fallback journal and the shutdown spill live in the data dir: mount a volume there so
# they survive the container (acknowledged writes are replayed from it at start).
RUN mkdir -p /app/data && chown docroom:docroom /app/data
VOLUME ["/app/data"]

ENV DOCROOM_LISTEN=0.0.0.0:8080 \
    DOCROOM_DATA_DIR=/app/data

USER docroom:docroom
EXPOSE 8080
# docroom drains rooms and the fallback to PostgreSQL on SIGTERM (25 s deadline by default):
# give it longer than that before a SIGKILL, e.g. `docker stop -t 35`.
STOPSIGNAL SIGTERM
# Follows the port of DOCROOM_LISTEN if it is overridden at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${DOCROOM_LISTEN##*:}/healthz\" || exit 1"]

ENTRYPOINT ["/usr/local/bin/docroom"]
CMD ["serve"]
