# syntax=docker/dockerfile:1
#
# The wafleet manager: a static binary (CGO_ENABLED=0) on distroless/static,
# running as the non-root user 65532 with a writable /data for the embedded
# (bbolt) store. See README, "Deploy".
#
# .git is not sent to the builder (.dockerignore), so `go build` cannot
# stamp the revision; pass it, and the version, as build arguments, which
# the linker writes into main.buildVersion and main.buildRevision for
# `manager version`:
#
#   docker build -t wafleet \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Without them `manager version` says "(devel)" and the Go version.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG REVISION=""
ENV CGO_ENABLED=0
RUN go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.buildVersion=${VERSION} -X main.buildRevision=${REVISION}" \
      -o /out/manager ./cmd/manager \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/manager /usr/local/bin/manager
COPY config.yaml /etc/wafleet/config.yaml
COPY --from=build --chown=65532:65532 /out/data /data
# Inside a container the API must be reachable from outside it, which needs
# WAFLEET_HTTP_TOKEN (the manager refuses to start without one).
ENV WAFLEET_STORE_PATH=/data/wafleet.db \
    WAFLEET_HTTP_LISTEN=0.0.0.0:8080
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# /healthz answers without the token; /readyz once the accounts started.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/manager", "health", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/manager"]
CMD ["run", "--config", "/etc/wafleet/config.yaml"]
