#!/bin/sh
# Runs once, when the PostgreSQL container starts on an empty data directory
# (/docker-entrypoint-initdb.d of the official image). Creates what Cardinsa expects:
#   cardinsa_owner  owns the database and, through the migrations, the schemas;
#                   only the migration jobs connect as it
#   cardinsa_app    what the services connect as: owns nothing, is no superuser and
#                   cannot bypass row-level security, so the tenant policies apply
#   cardinsa_platform  what the services' cross-tenant code paths connect as (login
#                   by email, platform-admin reads): owns nothing, no superuser, no
#                   RLS bypass; its own policy sees every tenant. cardinsa_app is
#                   no member of it, so no setting widens the app role's view
# Passwords come from the environment (CARDINSA_OWNER_PASSWORD, CARDINSA_APP_PASSWORD,
# CARDINSA_PLATFORM_PASSWORD), never from this file. Kept identical in deploy/compose/postgres-init/ and
# deploy/k8s/overlays/dev/postgres/ (a test compares them).
set -eu
: "${CARDINSA_OWNER_PASSWORD:?CARDINSA_OWNER_PASSWORD must be set}"
: "${CARDINSA_APP_PASSWORD:?CARDINSA_APP_PASSWORD must be set}"
: "${CARDINSA_PLATFORM_PASSWORD:?CARDINSA_PLATFORM_PASSWORD must be set}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set owner_password="$CARDINSA_OWNER_PASSWORD" \
  --set app_password="$CARDINSA_APP_PASSWORD" \
  --set platform_password="$CARDINSA_PLATFORM_PASSWORD" <<'SQL'
CREATE ROLE cardinsa_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE cardinsa_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE ROLE cardinsa_platform LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'platform_password';
CREATE DATABASE cardinsa OWNER cardinsa_owner;
REVOKE ALL ON DATABASE cardinsa FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE cardinsa TO cardinsa_app;
GRANT CONNECT ON DATABASE cardinsa TO cardinsa_platform;
SQL
