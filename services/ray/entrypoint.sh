#!/bin/sh
# Entrypoint of the nnchain Ray image (head and workers): turns secret files into what
# MLflow and libpq read, then runs the command (`ray start ... --block`).
#
#   MLFLOW_TRACKING_PASSWORD_FILE  -> MLFLOW_TRACKING_PASSWORD (MLflow reads no *_FILE)
#   NNCHAIN_DB_PASSWORD_FILE       -> a libpq password file (PGPASSFILE, mode 0600), so
#                                     NNCHAIN_LEDGER_URL carries no password
#   RAY_AUTH_TOKEN_PATH            -> a private copy (mode 0600, in a 0700 folder), which
#                                     Ray reads itself (token authentication): the mounted
#                                     secret keeps the host's mode, which may be 0644
#
# The sweep driver that `nnchain sweep submit` starts on the head inherits this
# environment: the cluster, not the job, holds the credentials (Ray logs a job's env).
set -eu

if [ -n "${MLFLOW_TRACKING_PASSWORD_FILE:-}" ]; then
    MLFLOW_TRACKING_PASSWORD=$(cat "$MLFLOW_TRACKING_PASSWORD_FILE")
    export MLFLOW_TRACKING_PASSWORD
fi
unset MLFLOW_TRACKING_PASSWORD_FILE

if [ -n "${NNCHAIN_DB_PASSWORD_FILE:-}" ]; then
    umask 077
    pgpass_dir=$(mktemp -d)
    escaped=$(sed -e 's/\\/\\\\/g' -e 's/:/\\:/g' "$NNCHAIN_DB_PASSWORD_FILE")
    printf '*:*:*:%s:%s\n' "${NNCHAIN_DB_USER:-nnchain}" "$escaped" > "$pgpass_dir/pgpass"
    PGPASSFILE="$pgpass_dir/pgpass"
    export PGPASSFILE
    umask 022
fi
unset NNCHAIN_DB_PASSWORD_FILE

if [ -n "${RAY_AUTH_TOKEN_PATH:-}" ] && [ -r "$RAY_AUTH_TOKEN_PATH" ]; then
    umask 077
    token_dir=$(mktemp -d)
    cat "$RAY_AUTH_TOKEN_PATH" > "$token_dir/auth_token"
    chmod 600 "$token_dir/auth_token"
    RAY_AUTH_TOKEN_PATH="$token_dir/auth_token"
    export RAY_AUTH_TOKEN_PATH
    umask 022
fi

exec "$@"
