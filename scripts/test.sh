#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: set-up, type check, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export TEST_DATABASE_ADMIN_URL="${TEST_DATABASE_ADMIN_URL:-$CONVOY_PG_ADMIN_URL}"
npm run --silent typecheck
npx vitest run "$@"
