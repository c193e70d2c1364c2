# A streamwork worker image: slim, non-root, with tini as PID 1 so SIGTERM reaches the
# supervisor (which stops fetching, finishes running messages within --grace and exits 0)
# and orphans are reaped.
#
#   docker build -t streamwork .
#   docker run --rm -e STREAMWORK_REDIS_URL=redis://redis:6379/0 streamwork worker examples.orders:app
#
# For your own project: copy your code instead of examples/, and name your MODULE:APP.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group streamwork

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamwork ./streamwork
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[web]"
COPY examples ./examples

USER 10001
# the metrics server: /metrics, /healthz, /readyz
EXPOSE 9100
ENTRYPOINT ["tini", "--", "streamwork"]
CMD ["worker", "examples.orders:app", "--metrics-port", "9100", "--metrics-address", "0.0.0.0"]
