# syntax=docker/dockerfile:1.7
# rtb-trainer: trains, evaluates and publishes the LightGBM bid-filtering model. A one-shot job.
#
#   docker build -f deploy/docker/trainer.Dockerfile -t rtb-trainer .
#
# Build context: the repository root. LightGBM is compiled from source by lightgbm3-sys: CMake
# >= 3.28 (Debian 12 ships 3.25, so it comes from PyPI), a C++ compiler and make, and libclang
# for bindgen. It links OpenMP (libgomp) and libstdc++ dynamically, so the runtime needs both.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG CMAKE_VERSION=3.31.10
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev g++ make python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/cmake \
    && /opt/cmake/bin/pip install --no-cache-dir "cmake==${CMAKE_VERSION}"
ENV PATH=/opt/cmake/bin:$PATH
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=rtb-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=rtb-cargo-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin rtb-trainer \
    && install -D -m 0755 -t /out target/release/rtb-trainer

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# libgomp1: LightGBM's OpenMP threads; libstdc++6: LightGBM itself; tini: signals as PID 1
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 libstdc++6 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rtb \
    && useradd --system --uid 10001 --gid rtb --home-dir /var/lib/rtb --create-home --shell /usr/sbin/nologin rtb
COPY --from=build /out/ /usr/local/bin/
WORKDIR /var/lib/rtb
USER 10001:10001
# a batch job that exits when done: nothing to probe
HEALTHCHECK NONE
ENTRYPOINT ["tini", "--", "rtb-trainer"]
CMD ["train", "--help"]
