#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first created: the warehouse database and
# its owner, separate from Airflow's metadata database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$S1MIG_WAREHOUSE_PASSWORD" <<'SQL'
create role s1mig login password :'pw';
create database s1mig owner s1mig;
create role s1mig_bi_reader nologin;
SQL
