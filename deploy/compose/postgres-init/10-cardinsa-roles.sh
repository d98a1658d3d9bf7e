#!/bin/sh
# Runs once, when the PostgreSQL container starts on an empty data directory
# (/docker-entrypoint-initdb.d of the official image). Creates what Cardinsa expects:
#   cardinsa_owner  owns the database and, through the migrations, the schemas;
#                   only the migration jobs connect as it
#   cardinsa_app    what the services connect as: owns nothing, is no superuser and
#                   cannot bypass row-level security, so the tenant policies apply
# Passwords come from the environment (CARDINSA_OWNER_PASSWORD, CARDINSA_APP_PASSWORD),
# never from this file. Kept identical in deploy/compose/postgres-init/ and
# deploy/k8s/overlays/dev/postgres/ (a test compares them).
set -eu
: "${CARDINSA_OWNER_PASSWORD:?CARDINSA_OWNER_PASSWORD must be set}"
: "${CARDINSA_APP_PASSWORD:?CARDINSA_APP_PASSWORD must be set}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set owner_password="$CARDINSA_OWNER_PASSWORD" \
  --set app_password="$CARDINSA_APP_PASSWORD" <<'SQL'
CREATE ROLE cardinsa_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE cardinsa_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE DATABASE cardinsa OWNER cardinsa_owner;
REVOKE ALL ON DATABASE cardinsa FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE cardinsa TO cardinsa_app;
SQL
