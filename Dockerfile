# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath

# module downloads are cached separately from the source
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/checkout ./cmd/checkout
# analytics (issue 14): the Parquet directory, owned by nonroot so a named volume
# mounted there starts writable
RUN mkdir -p /out/analytics

# ---- run --------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/checkout /checkout
COPY --from=build --chown=nonroot:nonroot /out/analytics /var/lib/checkout/analytics
ENV HTTP_ADDR=:8080 \
    APP_ENV=production
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/checkout"]
CMD ["serve"]
