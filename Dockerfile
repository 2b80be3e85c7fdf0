# Build stage: SQLCipher and the OpenSSL it uses are compiled from source by cargo
# (the image already has the C compiler, make and perl they need).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ward

# Run stage: the binary and its start script, nothing else.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data ward && mkdir -p /data && chown ward /data
COPY --from=build /src/target/release/ward /usr/local/bin/ward
COPY scripts/start /usr/local/bin/ward-start
ENV WARD_DATA_DIR=/data WARD_ADDR=0.0.0.0:8080
EXPOSE 8080
CMD ["/usr/local/bin/ward-start"]
