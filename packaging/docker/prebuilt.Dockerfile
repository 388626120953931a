# The `scratch` image of the Dockerfile, from binaries built on the host
# instead of in a Rust image (which a machine without registry access cannot
# pull). The packaging test builds it this way:
#
#   scripts/rootfs CONTEXT/rootfs target/release/vigild target/release/vigilctl
#   cp packaging/vigil.conf CONTEXT/
#   docker build -f packaging/docker/prebuilt.Dockerfile -t vigil:scratch CONTEXT
FROM scratch
COPY rootfs/ /
COPY vigil.conf /etc/vigil/vigil.conf
ENTRYPOINT ["/usr/bin/vigild", "-n", "-c", "/etc/vigil/vigil.conf"]
