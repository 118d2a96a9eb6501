#!/usr/bin/env bash
# Runs Convoy's main job on a fresh Debian/Ubuntu machine: API + controller + an embedded worker agent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [ -z "${DATABASE_URL:-}" ]; then
  export DATABASE_URL="${CONVOY_PG_ADMIN_URL%/postgres}/convoy"
  psql "$CONVOY_PG_ADMIN_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname='convoy'" | grep -q 1 \
    || psql "$CONVOY_PG_ADMIN_URL" -qc 'CREATE DATABASE convoy'
fi
exec npm run --silent dev
