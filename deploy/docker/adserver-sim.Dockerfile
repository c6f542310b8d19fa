# syntax=docker/dockerfile:1.7
# rtb-adserver-sim: the simulated ad server that replays bid requests at the scorer and reports
# latency (client side) and the likelihood to bid.
#
#   docker build -f deploy/docker/adserver-sim.Dockerfile -t rtb-adserver-sim .
#
# Build context: the repository root.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=rtb-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=rtb-cargo-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin rtb-adserver-sim \
    && install -D -m 0755 -t /out target/release/rtb-adserver-sim

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rtb \
    && useradd --system --uid 10001 --gid rtb --home-dir /var/lib/rtb --create-home --shell /usr/sbin/nologin rtb
COPY --from=build /out/ /usr/local/bin/
WORKDIR /var/lib/rtb
USER 10001:10001
# A load client: it listens on nothing, so there is nothing to probe; its exit status and its
# periodic summaries in the log are the signal.
HEALTHCHECK NONE
ENTRYPOINT ["tini", "--", "rtb-adserver-sim"]
CMD ["--help"]
