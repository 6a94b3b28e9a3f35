# fleetwave serve as a container: a static binary on distroless, running as nonroot (65532).
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) -t fleetwave .
# The binary needs no git, shell or libc: git is spoken in Go (go-git and gitops' send-pack).
# `make static` builds the same binary outside Docker; test/install_test.go checks it is static.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/fleetwave ./cmd/fleetwave

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fleetwave /fleetwave
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/fleetwave"]
