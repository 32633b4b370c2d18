# syntax=docker/dockerfile:1
# whatsapp-exporter in a small image, as an unprivileged user.
#
#   docker build -t whatsapp-exporter .
#   docker run -p 9477:9477 -e SPLASHIFY_API_KEY \
#     -v "$PWD/config.yaml:/etc/whatsapp-exporter/config.yaml:ro" whatsapp-exporter
#   docker run -p 9477:9477 whatsapp-exporter --demo        # no account needed
#
# Counters that go on across restarts (docs/persistence.md): their state on a named volume.
#   docker run -p 9477:9477 -e SPLASHIFY_API_KEY \
#     -v "$PWD/config.yaml:/etc/whatsapp-exporter/config.yaml:ro" \
#     -v whatsapp-exporter-state:/var/lib/whatsapp-exporter whatsapp-exporter \
#     --config /etc/whatsapp-exporter/config.yaml \
#     --persistence.file /var/lib/whatsapp-exporter/state.db
#
# The build stage turns the package and its dependencies into wheels; the final stage installs
# them from a bind mount, so neither the sources nor the wheels stay in a layer.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="whatsapp-exporter" \
      org.opencontainers.image.description="Prometheus exporter for WhatsApp Business conversation analytics (Splashify partner API)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
 && groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid exporter --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin exporter \
 && install -d -o exporter -g exporter /etc/whatsapp-exporter /var/lib/whatsapp-exporter
USER 10001:10001
WORKDIR /var/lib/whatsapp-exporter
# Where --persistence.file keeps the counters' state (one file per process, never shared).
VOLUME ["/var/lib/whatsapp-exporter"]
EXPOSE 9477
# /healthz answers 200 while the process is alive. The slim image has no curl: Python's own
# urllib does the request, and an exception (no answer, non-2xx) makes the check fail. With
# TLS (--web.config.file) or another port, change the URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9477/healthz', timeout=4)"]
ENTRYPOINT ["whatsapp-exporter"]
CMD ["--config", "/etc/whatsapp-exporter/config.yaml"]
