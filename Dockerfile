# syntax=docker/dockerfile:1
#
# mcp-warden container images. Targets:
#   bin     FROM scratch with only /mcp-warden, a static (musl) binary: COPY --from it into any
#           image, or run it as an init container that copies itself into a shared emptyDir
#           (`/mcp-warden install /warden`) so an unmodified server image can run it.
#   node    mcp-warden + Node.js, for servers from npm (pre-install them with
#           --build-arg NPM_PACKAGES="@modelcontextprotocol/server-everything@2025.11.25").
#   python  mcp-warden + Python, for servers from PyPI (--build-arg PIP_PACKAGES=mcp-server-time).
#
#   docker build --target node -t mcp-warden:node .
#   docker build --target bin -t mcp-warden:bin .
#   scripts/build-image      the same without a registry: buildah, locally bootstrapped Debian
#                            bases and a binary built on the host (BINARY=prebuilt)
#
# Every image runs as uid/gid 65532 and needs no shell at run time (exec-form entrypoint, no
# wrapper script). mcp-warden is PID 1 itself, without tini: it installs SIGTERM/SIGINT
# handlers (the kernel drops only signals PID 1 has no handler for) and drains on them; it
# reaps every child with waitpid(-1) on SIGCHLD, which is what PID 1 owes orphans; and each
# session's server runs under a supervisor (a subreaper in its own process group) that kills
# and reaps the server's whole tree. An init in front of it would only forward signals.
# Servers write caches under HOME and /tmp, both /tmp here, so a read-only root filesystem
# needs one writable volume at /tmp.

# Base images, overridable (a mirror, or the local bases scripts/build-image makes).
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG NODE_IMAGE=docker.io/library/node:22-bookworm-slim
ARG PYTHON_IMAGE=docker.io/library/python:3.12-slim-bookworm
# Where the binary comes from: "source" (compiled in the build) or "prebuilt" (the context's
# dist/mcp-warden, a static build for RUST_TARGET).
ARG BINARY=source
ARG RUST_TARGET=x86_64-unknown-linux-musl

FROM ${RUST_IMAGE} AS binary-source
ARG RUST_TARGET
WORKDIR /src
# musl-gcc compiles the C parts of dependencies (aws-lc, for TLS) for the static target.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rustup target add "${RUST_TARGET}" \
 && cargo build --release --locked --target "${RUST_TARGET}" --bin mcp-warden \
 && install -D -m 0755 "target/${RUST_TARGET}/release/mcp-warden" /out/mcp-warden

FROM scratch AS binary-prebuilt
COPY dist/mcp-warden /out/mcp-warden

FROM binary-${BINARY} AS binary

# Only the binary: for COPY --from and init-container injection.
FROM scratch AS bin
COPY --from=binary --chmod=0755 /out/mcp-warden /mcp-warden
USER 65532:65532
ENTRYPOINT ["/mcp-warden"]
CMD ["--help"]

FROM ${NODE_IMAGE} AS node
ARG NPM_PACKAGES=""
# Servers are installed at build time: `npx -y` at run time needs the network and a writable
# cache, and would fetch unpinned code into every session.
RUN if [ -n "${NPM_PACKAGES}" ]; then \
      npm install --global --omit=dev --no-audit --no-fund ${NPM_PACKAGES} \
      && npm cache clean --force; \
    fi
COPY --from=binary --chmod=0755 /out/mcp-warden /usr/local/bin/mcp-warden
ENV HOME=/tmp \
    npm_config_cache=/tmp/.npm \
    npm_config_update_notifier=false \
    XDG_CACHE_HOME=/tmp/.cache \
    MCP_WARDEN_LISTEN=0.0.0.0:8080
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/mcp-warden"]
CMD ["wrap", "--help"]

FROM ${PYTHON_IMAGE} AS python
ARG PIP_PACKAGES=""
# A virtual environment, so installing works on distribution Pythons too (PEP 668).
RUN python3 -m venv /opt/mcp \
 && if [ -n "${PIP_PACKAGES}" ]; then \
      /opt/mcp/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_PACKAGES}; \
    fi
COPY --from=binary --chmod=0755 /out/mcp-warden /usr/local/bin/mcp-warden
ENV PATH=/opt/mcp/bin:${PATH} \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MCP_WARDEN_LISTEN=0.0.0.0:8080
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/mcp-warden"]
CMD ["wrap", "--help"]
