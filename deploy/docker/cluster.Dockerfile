# syntax=docker/dockerfile:1.7
# The feature ETL and its Ballista cluster: rtb-etl (generate, run), rtb-scheduler, rtb-executor.
# One build, three small runtime targets that differ only in entrypoint, defaults and health check.
#
#   docker build -f deploy/docker/cluster.Dockerfile --target etl       -t rtb-etl .
#   docker build -f deploy/docker/cluster.Dockerfile --target scheduler -t rtb-scheduler .
#   docker build -f deploy/docker/cluster.Dockerfile --target executor  -t rtb-executor .
#
# Build context: the repository root. Every image carries all three binaries, so one pushed image
# (the default target, `etl`) can also run as scheduler or executor with an entrypoint override.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binaries are copied out
# of the cache mount in the same step.
RUN --mount=type=cache,id=rtb-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=rtb-cargo-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin rtb-etl --bin rtb-scheduler --bin rtb-executor \
    && install -D -m 0755 -t /out target/release/rtb-etl target/release/rtb-scheduler target/release/rtb-executor

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to S3 and SSM; tini: PID 1 that forwards SIGTERM and reaps children
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rtb \
    && useradd --system --uid 10001 --gid rtb --home-dir /var/lib/rtb --create-home --shell /usr/sbin/nologin rtb
COPY --from=build /out/ /usr/local/bin/
WORKDIR /var/lib/rtb
USER 10001:10001
# containers listen on every interface; the binaries default to loopback for laptops
ENV RTB_SCHEDULER_BIND_HOST=0.0.0.0 \
    RTB_EXECUTOR_BIND_HOST=0.0.0.0

FROM runtime AS scheduler
EXPOSE 50050
# liveness only: /readyz waits for executors, which must not make the scheduler look dead
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["rtb-etl", "health", "--url", "http://127.0.0.1:50050/healthz"]
ENTRYPOINT ["tini", "--", "rtb-scheduler"]

FROM runtime AS executor
# Arrow Flight (shuffle and results), gRPC, /healthz and /readyz
EXPOSE 50051 50052 50053
ENV RTB_EXECUTOR_WORK_DIR=/tmp/rtb-executor
# liveness only: /readyz follows the heartbeat to the scheduler
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["rtb-etl", "health", "--url", "http://127.0.0.1:50053/healthz"]
ENTRYPOINT ["tini", "--", "rtb-executor"]

# Last, so a plain `docker build` makes the ETL runner. A one-shot job: no health check.
FROM runtime AS etl
HEALTHCHECK NONE
ENTRYPOINT ["tini", "--", "rtb-etl"]
CMD ["--help"]
