# flexgs-server image (also carries flexgs-client and flexgs-health-probe).
#
#   docker build -f docker/server.Dockerfile -t flexgs-server .
#   docker run --gpus all -v /srv/scenes:/scenes:ro -p 50051:50051 -p 9464:9464 flexgs-server
#
# The build stage is byte-identical to docker/client.Dockerfile's, so both images
# share its cached layers (dependencies and compiled binaries). With the default CUDA
# base the kernels are built (nvcc is auto-detected); with a plain Debian/Ubuntu base
# (e.g. --build-arg BASE_IMAGE=debian:bookworm --build-arg RUNTIME_IMAGE=debian:bookworm)
# the image is the CPU build. Settings: FLEXGS_* environment variables (README).
ARG BASE_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04
ARG RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

# ---- build stage (keep identical in docker/client.Dockerfile) ----
FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN FLEXGS_DEPS=compile bash deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# After the dependencies' layer, which they would otherwise key (so it is shared).
# ON: -march=x86-64-v3 when the *build* machine has AVX2+FMA (about 2x faster CPU
# paths); OFF for images that must run on older x86-64 CPUs.
ARG FLEXGS_X86_64_V3=ON
# Release for images you deploy; tests/process/container_test.sh builds with None (no
# optimisation: a third of the compile time) since it only checks that the image works.
ARG FLEXGS_BUILD_TYPE=Release
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=${FLEXGS_BUILD_TYPE} -DCMAKE_INSTALL_PREFIX=/opt/flexgs \
      -DFLEXGS_BUILD_TESTS=OFF -DFLEXGS_BUILD_BENCH=OFF -DFLEXGS_X86_64_V3=${FLEXGS_X86_64_V3} \
 && cmake --build /build --target flexgs-server flexgs-health-probe flexgs-client \
 && install -D -m 0755 -t /opt/flexgs/bin \
      /build/server/flexgs-server /build/client/flexgs-health-probe /build/client/flexgs-client \
 && strip /opt/flexgs/bin/*
# ---- end of the shared build stage ----

FROM ${RUNTIME_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
COPY deploy/install-deps.sh /tmp/install-deps.sh
RUN FLEXGS_DEPS=runtime bash /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /opt/flexgs/bin/ /usr/local/bin/
# Every shared library must resolve (libcuda.so.1 comes from the host's driver at run time).
RUN if ldd /usr/local/bin/flexgs-* | grep 'not found' | grep -v 'libcuda\.so'; then exit 1; fi
# Service user with a fixed UID/GID 10001 (deploy/k8s runs as 10001); Ubuntu's
# images already have UID 1000 (ubuntu), so no default UID is taken.
RUN groupadd --system --gid 10001 flexgs \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin flexgs \
 && mkdir -p /scenes
ENV FLEXGS_SCENES=/scenes \
    FLEXGS_HOST=0.0.0.0 \
    FLEXGS_PORT=50051 \
    FLEXGS_METRICS_HOST=0.0.0.0 \
    FLEXGS_METRICS_PORT=9464 \
    FLEXGS_DEVICE=auto \
    FLEXGS_LOG_LEVEL=info
VOLUME ["/scenes"]
EXPOSE 50051 9464
USER 10001:10001
# Exit 0 only while the server reports SERVING (NOT_SERVING while draining on SIGTERM).
# The probe runs in the container, so it reaches the server on 127.0.0.1 (any FLEXGS_HOST
# other than a non-loopback address); a changed FLEXGS_PORT is followed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD flexgs-health-probe --addr "127.0.0.1:${FLEXGS_PORT}" --service flexgs.v1.SceneService --timeout-ms 2000
STOPSIGNAL SIGTERM
ENTRYPOINT ["flexgs-server"]
