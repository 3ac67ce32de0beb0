# faultline's image: one binary for the drill's segments, the merge and the agent
# (docs/kubernetes.md). Not built in this repository's CI: it has no registry for base images.
#
#   docker build -t registry.example/faultline:0.1.0 .

# The builder matches `rust-version` in Cargo.toml.
FROM rust:1.85-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && cp target/release/faultline /faultline

# A shell (the segments' index arithmetic), ca-certificates (https load urls and upstreams),
# tar (kubectl cp) and nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /faultline /usr/local/bin/faultline
# Unprivileged by default (the drill's pods run as this user, uid 10001). The agent's
# DaemonSet runs it as root with every capability dropped but KILL: it signals the node's
# processes and keeps its journal in the node's /var/lib/faultline.
RUN groupadd --gid 10001 faultline \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin faultline
USER 10001:10001
ENTRYPOINT ["faultline"]
