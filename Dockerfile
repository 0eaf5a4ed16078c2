# syntax=docker/dockerfile:1
# Multi-stage build: a Rust toolchain compiles reach (no protoc needed: the
# protos are compiled by protox in build.rs), then only the binary goes into
# a distroless image that runs as a non-root user (65532) with nothing else
# in it — no shell, no package manager.

FROM rust:1.88-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY vendor vendor
COPY proto proto
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin reach || true
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin reach \
    && strip target/release/reach

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/reach /usr/local/bin/reach
# The data volume; the Helm chart mounts a PersistentVolumeClaim here.
VOLUME /var/lib/reach
ENV REACH_DATA_DIR=/var/lib/reach
EXPOSE 50051 9464
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/reach"]
CMD ["serve", "--listen", "0.0.0.0:50051"]
