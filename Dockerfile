# syntax=docker/dockerfile:1
# Build stage: resolve the locked dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --frozen --no-dev

# Runtime stage: no build tools, a non-root user; migrates, then serves.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app patron
WORKDIR /app
COPY --from=build --chown=patron:patron /app /app
ENV PATH="/app/.venv/bin:${PATH}" PYTHONUNBUFFERED=1
USER patron
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["patron", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
