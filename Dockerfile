# devo-aws-collector container image: a static binary on an empty base.
#
#   docker build -t devo-aws-collector:dev .        (or: buildah bud, podman build; make image)
#   docker run --rm devo-aws-collector:dev version
#
# Layout (docs/deploy.md):
#   /etc/devo-aws-collector/config/config.yaml   the configuration (mount it; a ConfigMap in Kubernetes)
#   /etc/devo-aws-collector/certs/               Devo chain, certificate and key (mount them; a Secret)
#   /var/lib/devo-aws-collector/                 state: checkpoints, spool, write-ahead journal (a volume)
# /etc/devo-aws-collector/state links to /var/lib/devo-aws-collector, so a
# configuration written for Devo's layout (directory_name: state) keeps its
# state on the volume too.

# GO_IMAGE is any image with the Go toolchain on PATH, a POSIX shell and
# /etc/ssl/certs/ca-certificates.crt; the official one by default.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
# GOPROXY and GOFLAGS pass through to go build (a private module proxy;
# the tests build offline with GOPROXY=off and a mounted module cache).
ARG GOPROXY
ARG GOFLAGS
ARG VERSION=0.1.0-dev
COPY go.mod go.sum ./
COPY cmd ./cmd
COPY internal ./internal
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/devo-aws-collector/devo-aws-collector/internal/app.Version=${VERSION}" \
      -o /rootfs/usr/local/bin/devo-aws-collector ./cmd/devo-aws-collector
# The final image has no shell: its few files are laid out here. UID/GID
# 10001 is numeric so Kubernetes' runAsNonRoot can check it.
RUN set -e; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/devo-aws-collector/config /rootfs/etc/devo-aws-collector/certs /rootfs/var/lib /rootfs/tmp /state; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    echo 'devo:x:10001:10001:devo-aws-collector:/var/lib/devo-aws-collector:/sbin/nologin' > /rootfs/etc/passwd; \
    echo 'devo:x:10001:' > /rootfs/etc/group; \
    ln -s /var/lib/devo-aws-collector /rootfs/etc/devo-aws-collector/state; \
    chmod 0700 /state; chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
# The state directory belongs to the collector's user (a new volume starts as a copy of it).
COPY --from=build --chown=10001:10001 /state /var/lib/devo-aws-collector
USER 10001:10001
WORKDIR /var/lib/devo-aws-collector
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
VOLUME ["/var/lib/devo-aws-collector"]
# globals.metrics_listen: "0.0.0.0:9464" serves /metrics and /healthz here.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/devo-aws-collector"]
CMD ["run", "--config", "/etc/devo-aws-collector/config/config.yaml"]
