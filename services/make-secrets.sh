#!/bin/sh
# Create services/secrets/* with random values (existing files are kept).
# The folder is private to you (0700); the files are readable inside the containers,
# which run as other users (bind-mounted secrets keep the host's file modes).
set -eu
cd "$(dirname "$0")/secrets"
chmod 700 .
for name in postgres_password mlflow_db_password nnchain_db_password mlflow_admin_password \
            nnchain_mlflow_password mlflow_flask_secret_key ray_auth_token; do
    if [ -s "$name" ]; then
        echo "kept    services/secrets/$name"
        continue
    fi
    python3 -c "import secrets; print(secrets.token_urlsafe(24), end='')" > "$name"
    chmod 644 "$name"
    echo "created services/secrets/$name"
done
