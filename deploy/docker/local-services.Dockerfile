# syntax=docker/dockerfile:1.7
# Stand-ins for the AWS services, for deploy/compose.yaml on a laptop: the same emulators the
# integration tests start (scripts/setup.sh pins the same versions).
#
#   s3s-fs  S3-compatible server over a folder (each sub-folder is a bucket)
#   moto    AWS SSM Parameter Store (moto's server; the only local SSM endpoint)
#   statsd  the StatsD daemon (npm statsd), printing every flush instead of the CloudWatch agent
#
# Built from registries only (crates.io, PyPI, npm); no build context is read.

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS s3s-fs-build
ARG S3S_FS_VERSION=0.14.1
RUN --mount=type=cache,id=rtb-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo install "s3s-fs@${S3S_FS_VERSION}" --features binary --locked --root /out

FROM debian:${DEBIAN_RELEASE}-slim AS s3s-fs
RUN groupadd --system --gid 10001 rtb \
    && useradd --system --uid 10001 --gid rtb --no-create-home --shell /usr/sbin/nologin rtb \
    && mkdir -p /data/aik \
    && chown -R rtb:rtb /data
COPY --from=s3s-fs-build /out/bin/s3s-fs /usr/local/bin/s3s-fs
USER 10001:10001
# /data/aik is the bucket `aik`; a fresh named volume starts as a copy of it
VOLUME ["/data"]
EXPOSE 8014
HEALTHCHECK --interval=5s --timeout=3s --retries=10 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8014"]
# the keys are passed at run time (--access-key / --secret-key), never built in
ENTRYPOINT ["s3s-fs", "--host", "0.0.0.0", "--port", "8014"]

FROM python:3.12-slim-${DEBIAN_RELEASE} AS moto
ARG MOTO_VERSION=5.2.1
RUN pip install --no-cache-dir "moto[server]==${MOTO_VERSION}" \
    && groupadd --system --gid 10001 rtb \
    && useradd --system --uid 10001 --gid rtb --no-create-home --shell /usr/sbin/nologin rtb
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=5s --timeout=3s --retries=10 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/moto-api/', timeout=2)"]
ENTRYPOINT ["moto_server", "-H", "0.0.0.0", "-p", "5000"]

FROM node:22-${DEBIAN_RELEASE}-slim AS statsd
ARG STATSD_VERSION=0.9.0
RUN npm install --global --omit=dev "statsd@${STATSD_VERSION}" \
    && npm cache clean --force
# the node image's own unprivileged user
USER node
EXPOSE 8125/udp
# UDP only: a TCP probe would prove nothing
HEALTHCHECK NONE
ENTRYPOINT ["statsd"]
CMD ["/etc/statsd/config.js"]
