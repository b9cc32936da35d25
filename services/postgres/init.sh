#!/bin/sh
# PostgreSQL init for an nnchain deployment: a role and databases for the MLflow tracking
# server (tracking + auth) and for the nnchain sweep ledger.
#
# The official postgres image runs it once, on an empty data volume, from
# /docker-entrypoint-initdb.d/. Passwords are read from secret files by psql itself
# (backquotes in \set), so they appear on no command line and in no file of this repo.
#
#   MLFLOW_DB_PASSWORD_FILE, NNCHAIN_DB_PASSWORD_FILE   required: the two roles' passwords
#   MLFLOW_DB_USER (mlflow), MLFLOW_DB_NAME (mlflow), MLFLOW_AUTH_DB_NAME (mlflow_auth),
#   NNCHAIN_DB_USER (nnchain), NNCHAIN_DB_NAME (nnchain)
#   POSTGRES_USER (postgres), POSTGRES_DB (postgres): who runs it, where it connects
set -eu

: "${MLFLOW_DB_PASSWORD_FILE:?must name the file holding the mlflow role's password}"
: "${NNCHAIN_DB_PASSWORD_FILE:?must name the file holding the nnchain role's password}"
for secret in "$MLFLOW_DB_PASSWORD_FILE" "$NNCHAIN_DB_PASSWORD_FILE"; do
    if [ ! -s "$secret" ]; then
        echo "init.sh: $secret must be a non-empty, readable file" >&2
        exit 2
    fi
done

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v mlflow_user="${MLFLOW_DB_USER:-mlflow}" \
    -v mlflow_db="${MLFLOW_DB_NAME:-mlflow}" \
    -v mlflow_auth_db="${MLFLOW_AUTH_DB_NAME:-mlflow_auth}" \
    -v nnchain_user="${NNCHAIN_DB_USER:-nnchain}" \
    -v nnchain_db="${NNCHAIN_DB_NAME:-nnchain}" <<'SQL'
\set mlflow_password `cat "$MLFLOW_DB_PASSWORD_FILE"`
\set nnchain_password `cat "$NNCHAIN_DB_PASSWORD_FILE"`
CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_password';
CREATE ROLE :"nnchain_user" LOGIN PASSWORD :'nnchain_password';
\unset mlflow_password
\unset nnchain_password
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
CREATE DATABASE :"mlflow_auth_db" OWNER :"mlflow_user";
CREATE DATABASE :"nnchain_db" OWNER :"nnchain_user";
REVOKE ALL ON DATABASE :"mlflow_db", :"mlflow_auth_db", :"nnchain_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"mlflow_db", :"mlflow_auth_db" TO :"mlflow_user";
GRANT CONNECT ON DATABASE :"nnchain_db" TO :"nnchain_user";
SQL
echo "init.sh: roles ${MLFLOW_DB_USER:-mlflow}, ${NNCHAIN_DB_USER:-nnchain} and their databases created"
