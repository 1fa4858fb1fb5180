# flexgs-client image: receives an elastic scene level by level (and renders it).
#
#   docker build -f docker/client.Dockerfile -t flexgs-client .
#   docker run --rm --network host -v "$PWD/out:/out" flexgs-client \
#     --server 127.0.0.1:50051 --scene guitar --budget-ratio 0.15 --out /out --json
#
# The build stage is byte-identical to docker/server.Dockerfile's (shared layer cache).
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
COPY --from=build /opt/flexgs/bin/flexgs-client /usr/local/bin/
RUN if ldd /usr/local/bin/flexgs-client | grep 'not found' | grep -v 'libcuda\.so'; then exit 1; fi
RUN groupadd --system --gid 10001 flexgs \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin flexgs \
 && mkdir -p /out && chown 10001:10001 /out
WORKDIR /out
USER 10001:10001
ENTRYPOINT ["flexgs-client"]
