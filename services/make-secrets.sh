#!/bin/sh
# Create services/secrets/* with random values (existing files are kept).
# The folder is private to you (0700) and so is every file (0600).
#
# Docker Compose bind-mounts each secret with the host's owner and mode (it applies a
# secret's uid, gid and mode in Swarm only), so a container whose user is not you cannot
# read a 0600 secret. Where the stack's containers run as their images' users (postgres,
# uid 1000), make them readable to those users with
#     NNCHAIN_SECRETS_MODE=0644 sh services/make-secrets.sh
# (the 0700 folder still keeps other users of this host out; services/secrets/README.md).
set -eu
mode=${NNCHAIN_SECRETS_MODE:-0600}
case "$mode" in
    0600|600|0640|640|0644|644) ;;
    *) echo "error: NNCHAIN_SECRETS_MODE must be 0600, 0640 or 0644, got '$mode'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/secrets"
umask 077
chmod 700 .
for name in postgres_password mlflow_db_password nnchain_db_password mlflow_admin_password \
            nnchain_mlflow_password mlflow_flask_secret_key ray_auth_token; do
    if [ -s "$name" ]; then
        chmod "$mode" "$name"
        echo "kept    services/secrets/$name ($mode)"
        continue
    fi
    python3 -c "import secrets; print(secrets.token_urlsafe(24), end='')" > "$name"
    chmod "$mode" "$name"
    echo "created services/secrets/$name ($mode)"
done
