#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: set-up, type check, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The GraphiQL test drives a real headless browser (Debian's chromium, through playwright-core).
command -v chromium >/dev/null 2>&1 || apt_install chromium
export TEST_DATABASE_ADMIN_URL="${TEST_DATABASE_ADMIN_URL:-$CONVOY_PG_ADMIN_URL}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-$CONVOY_REDIS_URL}"
npm run --silent typecheck
report=$(mktemp)
status=0
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@" || status=$?
# A plain closing line that any CI can read.
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)' "$report" || true
rm -f "$report"
exit $status
