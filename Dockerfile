# syntax=docker/dockerfile:1
# Vigil in a container, with vigild as PID 1 (it reaps orphans, forwards
# signals and exits 0 on `docker stop`). From the repository root:
#
#   docker build -t vigil .                         # Debian slim runtime (default)
#   docker build --target scratch -t vigil:scratch .   # vigild, vigilctl and their libraries only
#   docker build --target seed -t vigil-seed .      # the seed tutorial (examples/seed/compose.yaml)
#
# Programs go in /etc/vigil/conf.d/*.conf (mount a directory there); the
# control socket is /run/vigil/vigil.sock:
#
#   docker run -d --name vigil -v "$PWD/conf.d:/etc/vigil/conf.d:ro" vigil
#   docker exec vigil vigilctl -c /etc/vigil/vigil.conf status

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Outside a git checkout `--version` names the commit `unknown`.
RUN cargo build --release --locked -p vigil-daemon -p vigil-cli --bins \
    && scripts/rootfs /rootfs target/release/vigild target/release/vigilctl

# Nothing but the two binaries, the libraries they load and the default config.
# Programs need their own files: copy them in, or use the Debian runtime.
FROM scratch AS scratch
COPY --from=build /rootfs/ /
COPY packaging/vigil.conf /etc/vigil/vigil.conf
ENTRYPOINT ["/usr/bin/vigild", "-n", "-c", "/etc/vigil/vigil.conf"]

FROM ${RUNTIME_IMAGE} AS runtime-base
COPY --from=build /src/target/release/vigild /src/target/release/vigilctl /usr/bin/
COPY packaging/vigil.conf /etc/vigil/vigil.conf
RUN mkdir -p /etc/vigil/conf.d /var/log/vigil /run/vigil
ENTRYPOINT ["/usr/bin/vigild", "-n", "-c", "/etc/vigil/vigil.conf"]

# The seed tutorial at its last step: lighttpd in front of app1 and app2.
FROM runtime-base AS seed
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 lighttpd \
    && rm -rf /var/lib/apt/lists/*
COPY examples/seed /srv/seed
# Every program of the walk-through at once; lighttpd listens on every
# address, so that a published port reaches it.
RUN cp /srv/seed/programs/*.conf /srv/seed/conf.d/ \
    && sed -i 's/^server.bind = .*/server.bind = "0.0.0.0"/' /srv/seed/lighttpd.conf
ENV USER=nobody
ENTRYPOINT ["/usr/bin/vigild", "-n", "-c", "/srv/seed/supervisord.conf"]

FROM runtime-base AS runtime
