# syntax=docker/dockerfile:1
# Builds order-api and order-relay once; runs them as a non-root user on a
# small Debian base. The health check uses the binary itself (no curl).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY api api
COPY relay relay
COPY shared shared
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && cp target/release/order-api target/release/order-relay /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/order-api /usr/local/bin/order-relay /usr/local/bin/
USER 10001:10001
ENV LOG_FORMAT=json RUST_LOG=info
EXPOSE 3003 3004
# `healthcheck` asks the local /health/ready of whichever binary runs here.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/order-api", "healthcheck"]
CMD ["/usr/local/bin/order-api", "serve"]
