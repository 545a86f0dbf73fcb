# Images for the compose stack: `tracehound` (the server) and `demo` (the bookshop, its rate stub
# and load driver). Build: docker compose build (or docker build --target tracehound -t tracehound:0.1.0 .)
FROM python:3.11.10-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tracehound ./tracehound
COPY instrumentation ./instrumentation
COPY collector ./collector
COPY analyzer ./analyzer
COPY api ./api
COPY demo ./demo

FROM base AS tracehound
RUN pip install -e '.[server]'
EXPOSE 8000 4317 4318
VOLUME /data
ENTRYPOINT ["tracehound"]
CMD ["serve", "--host", "0.0.0.0", "--db", "/data/tracehound.duckdb"]

FROM base AS demo
# Editable install: the app's code stays under /src/demo/app (TRACEHOUND_CODE_INCLUDE points there).
RUN pip install -e '.[demo]' 'psycopg[binary]>=3.2' 'redis>=5'
EXPOSE 5000 8099
CMD ["opentelemetry-instrument", "python", "-m", "tracehound.demo.app", "--host", "0.0.0.0", "--port", "5000"]
