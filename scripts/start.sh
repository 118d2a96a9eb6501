#!/usr/bin/env bash
# Runs Convoy's main job on a fresh Debian/Ubuntu machine: API + controller + an embedded worker agent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Convoy's own role and password (setup.sh made them), unless the environment names others.
export DATABASE_URL="${DATABASE_URL:-$CONVOY_DATABASE_URL}"
export REDIS_URL="${REDIS_URL:-$CONVOY_REDIS_URL}"
exec npm run --silent dev
