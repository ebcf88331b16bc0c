# DropHost's service image. Multi-stage: wheels are built in the first stage; the final stage
# installs only those wheels (psycopg's binary wheel: no compiler anywhere in the final image).
# The base image is a build argument so it can be swapped (the tests use a locally built one).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The manifest first: the dependency layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && python3 -m pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt
COPY service ./service
COPY db ./db
COPY nginx ./nginx
COPY hooks ./hooks
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS service
# git for every git source (webhooks, repository URLs, polling, hosted repositories served with
# git http-backend) and the ssh client for ssh:// remotes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 drophost \
    && useradd --system --uid 10001 --gid drophost --home-dir /var/lib/drophost --shell /usr/sbin/nologin drophost \
    && mkdir -p /var/lib/drophost/tmp /var/lib/drophost/nginx /var/lib/drophost/builds \
    && chown -R drophost:drophost /var/lib/drophost
COPY --from=build /wheels /tmp/wheels
# A venv without pip of its own: the base image's pip installs into it, so only DropHost's
# packages end up in the layer.
RUN python3 -m venv --without-pip /opt/drophost \
    && python3 -m pip --python /opt/drophost/bin/python install --no-cache-dir --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
ENV PATH=/opt/drophost/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DROPHOST_DATA_DIR=/var/lib/drophost \
    TMPDIR=/var/lib/drophost/tmp
USER drophost
WORKDIR /var/lib/drophost
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=5 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3).status != 200)"]
CMD ["drophost", "serve", "--listen-host", "0.0.0.0", "--listen-port", "8000"]

# The builder (compose.yaml's `builder`): the same package plus bubblewrap and the build tools, running
# `drophost builder`. Builds run here, not in the service container, because bubblewrap needs user
# namespaces, which Docker's default seccomp profile refuses to a container without capabilities.
FROM service AS builder
ARG BUILD_PACKAGES="hugo"
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ${BUILD_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*
USER drophost
EXPOSE 8090
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=5 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8090/health', timeout=3).status != 200)"]
CMD ["drophost", "builder", "--listen-host", "0.0.0.0", "--listen-port", "8090"]
