# The s1mig image: Airflow services and the pipeline, installed from the same lock
# (constraints.txt) that `make install` uses.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow S1MIG_PROJECT_DIR=/opt/s1mig S1MIG_HOME=/opt/airflow/s1mig
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libpq5 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 50000 airflow

WORKDIR /opt/s1mig
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
COPY expectations ./expectations
RUN pip install -c constraints.txt ".[celery]"
ARG S1MIG_GIT_COMMIT=unknown
ENV S1MIG_GIT_COMMIT=${S1MIG_GIT_COMMIT}
COPY dags ./dags
COPY dbt_project ./dbt_project

RUN mkdir -p /opt/airflow/s1mig /landing /exports && chown -R airflow /opt/airflow /landing /exports
USER airflow
