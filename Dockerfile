# The API image: FastAPI + Celery client, no TensorFlow/Keras (the API never imports them).
#   docker build -t lrrt-api:0.1.0 .        (docker compose build does this)
# Dependencies are the pinned closure in deploy/requirements-api.txt (deploy/lock.sh makes it).
# BASE_IMAGE: where no image registry is reachable, a local Debian base with Python 3.11 made by
# deploy/base-image.sh (deploy/docker-compose.local.yml passes it); the public image otherwise.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    LRRT_DATA_ROOT=/data

RUN groupadd --system --gid 10001 lrrt \
 && useradd --system --uid 10001 --gid lrrt --create-home --home-dir /home/lrrt lrrt \
 && mkdir -p /data \
 && chown lrrt:lrrt /data

WORKDIR /app
COPY deploy/requirements-api.txt /tmp/requirements-api.txt
RUN pip install --no-deps -r /tmp/requirements-api.txt \
 && pip check

# The project: the build context is .dockerignore's allow-list (pyproject.toml and the Python packages),
# so a new top-level package is one line there, for both images.
COPY . ./
RUN pip install --no-deps . \
 && rm -rf build *.egg-info \
 && python -c "import service.app, sys; bad = {'tensorflow', 'keras'} & set(sys.modules); sys.exit(f'API imports {bad}' if bad else 0)"

COPY deploy/healthcheck.py /usr/local/lib/lrrt/healthcheck.py

USER lrrt
WORKDIR /home/lrrt
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/usr/local/lib/lrrt/healthcheck.py", "api"]
# Off loopback the API refuses to start without LRRT_API_KEYS (tenant:key,...).
CMD ["lrrt", "api", "--host", "0.0.0.0", "--port", "8000"]
