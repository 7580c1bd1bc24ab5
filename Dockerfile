# syntax=docker/dockerfile:1
#
# docroom: multi-stage build.
#   chef:    the Rust toolchain with cargo-chef (a cached layer of its own).
#   planner: reduces the workspace to a recipe (every member's manifest, Cargo.lock, and the
#            targets they declare); the recipe changes only when a dependency does.
#   builder: cooks the recipe (compiles the dependencies alone, cached as long as the recipe is
#            unchanged), then builds the workspace's own code on top.
#   runtime: debian slim with the one binary, its config/ directory, and a non-root user.
# cargo-chef finds every workspace member itself, so adding one needs no edit here.
#
#   docker build -t docroom .
#   docker run -p 8080:8080 \
#     -e DOCROOM_REDIS_URL=redis://redis:6379 \
#     -e DOCROOM_DATABASE_URL=postgres://postgres@db:5432/docroom \
#     -v docroom-data:/app/data docroom

FROM rust:1-bookworm AS chef
# Pinned, so a cargo-chef release cannot change the recipe format under a cached layer.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

# --- planner: the recipe ----------------------------------------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin docroom

# --- builder: dependencies from the recipe, then the workspace's own code ---------------------
FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin docroom
COPY . .
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
