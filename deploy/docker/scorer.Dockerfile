# syntax=docker/dockerfile:1.7
# rtb-scorer: the bid-filtering HTTP service.
#
#   docker build -f deploy/docker/scorer.Dockerfile -t rtb-scorer .
#   docker run -p 8080:8080 -e RTB_PARAMETER_STORE=ssm:// rtb-scorer
#
# Build context: the repository root. No LightGBM here: the scorer evaluates the trees natively
# (rtb-model), so the builder needs nothing beyond the Rust image. The admin token
# (RTB_ADMIN_TOKEN) is never part of the image: pass it at run time from a secret store.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=rtb-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=rtb-cargo-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin rtb-scorer \
    && install -D -m 0755 -t /out target/release/rtb-scorer

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rtb \
    && useradd --system --uid 10001 --gid rtb --home-dir /var/lib/rtb --create-home --shell /usr/sbin/nologin rtb
COPY --from=build /out/ /usr/local/bin/
WORKDIR /var/lib/rtb
USER 10001:10001
ENV RTB_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Liveness (/healthz), not readiness: a scorer started with --start-unready waits for its first
# model and must not be killed meanwhile. Orchestrators that gate traffic probe /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["rtb-scorer", "health", "--url", "http://127.0.0.1:8080/healthz"]
# tini forwards SIGTERM to the scorer, which drains: readiness false, then in-flight requests finish
ENTRYPOINT ["tini", "--", "rtb-scorer"]
CMD ["serve"]
