# One Dockerfile for both servers. Pick one with the build target:
#   docker build --target auth-server -t articles-auth/auth-server .
#   docker build --target api-server  -t articles-auth/api-server .
# docker-compose.yml does this for you.
#
# Dependency caching uses a "skeleton" of the workspace (manifests, Cargo.lock and
# empty target roots) rather than `RUN --mount=type=cache`: cache mounts need
# BuildKit on Docker, while the skeleton works with BuildKit, the classic builder
# and podman/buildah alike. Only a change to a Cargo.toml or Cargo.lock rebuilds
# the dependencies; a code change rebuilds the workspace crates only.
# Only Dockerfile features that work on all three are used: no heredocs,
# no COPY --link, no secret mounts.

# --- skeleton: what decides the dependency build, and nothing else -----------
FROM rust:1.95-slim-bookworm AS skeleton
WORKDIR /src
COPY . .
# Manifests and the lockfile as they are; every target root (lib.rs, main.rs,
# src/bin/*.rs, build.rs) replaced by a stub. Timestamps are fixed so that the
# layer below depends on the content only.
RUN set -eu; \
    mkdir -p /skeleton; \
    cp Cargo.toml Cargo.lock /skeleton/; \
    find . -mindepth 2 -name Cargo.toml -not -path '*/target/*' | while read -r manifest; do \
        mkdir -p "/skeleton/$(dirname "$manifest")"; \
        cp "$manifest" "/skeleton/$manifest"; \
    done; \
    find . -type f -not -path '*/target/*' \
        \( -path '*/src/main.rs' -o -path '*/src/bin/*.rs' -o -name build.rs \) | while read -r root; do \
        mkdir -p "/skeleton/$(dirname "$root")"; \
        echo 'fn main() {}' > "/skeleton/$root"; \
    done; \
    find . -type f -not -path '*/target/*' -path '*/src/lib.rs' | while read -r root; do \
        mkdir -p "/skeleton/$(dirname "$root")"; \
        : > "/skeleton/$root"; \
    done; \
    find /skeleton -exec touch -h -d @0 {} +

# --- build: dependencies first (cached), then the workspace ------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The image's toolchain is the pinned one: rust-toolchain.toml is left out of the
# context (.dockerignore), so rustup never downloads another toolchain here.
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked -p auth-server -p api-server
COPY . .
# The real sources may be older than the stub build: touch them so that cargo
# rebuilds the workspace crates instead of shipping the stubs.
RUN set -eu; \
    find . -name '*.rs' -not -path './target/*' -exec touch {} +; \
    cargo build --release --locked -p auth-server -p api-server; \
    mkdir -p /out; \
    cp target/release/auth-server target/release/api-server /out/

# --- runtime base: no compiler, no keys, no secrets --------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: the api-server may fetch the JWKS over https (API_JWKS_URL).
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 app; \
    useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
ENV RUST_LOG=info

# --- api-server: runs as `app`, reads public keys only -----------------------
FROM runtime AS api-server
COPY --from=build /out/api-server /usr/local/bin/api-server
ENV API_BIND=0.0.0.0:4000 \
    API_KEYS_DIR=/keys/public
USER 10001:10001
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["api-server", "healthcheck"]
ENTRYPOINT ["api-server"]
CMD ["serve"]

# --- auth-server: the server runs unprivileged, as the owner of the keys folder
FROM runtime AS auth-server
# /usr/local/bin/auth-server is a small wrapper: started as root (the default
# here) it makes the keys folder writable for an unprivileged user, then runs
# the real binary as that user. So `docker compose exec auth-server auth-server
# keys rotate` writes keys the server can read. See docker/auth-server-entrypoint.sh.
COPY --from=build /out/auth-server /usr/local/libexec/auth-server
COPY --chmod=0755 docker/auth-server-entrypoint.sh /usr/local/bin/auth-server
ENV AUTH_BIND=0.0.0.0:5000 \
    AUTH_KEYS_DIR=/keys
RUN mkdir -p /keys && chown 10001:10001 /keys
VOLUME /keys
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["auth-server", "healthcheck"]
ENTRYPOINT ["auth-server"]
CMD ["serve"]
