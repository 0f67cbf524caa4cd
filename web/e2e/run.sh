#!/usr/bin/env bash
# The console's browser test: builds callcontrold, installs Chromium (the
# Debian package, through scripts/test-deps.sh) and web/'s locked npm
# packages when missing, and runs console.test.mjs with node's test runner.
# The screenshot lands in artifacts/ (gitignored; CI keeps it).
#
# Run from anywhere: bash web/e2e/run.sh   (or: make e2e-browser)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

bash scripts/test-deps.sh
if [[ ! -f web/node_modules/.package-lock.json || web/package-lock.json -nt web/node_modules/.package-lock.json ]]; then
	(cd web && npm ci --no-audit --no-fund)
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/callcontrold" ./cmd/callcontrold
mkdir -p artifacts
CALLCONTROLD_BIN="$tmp/callcontrold" ARTIFACTS_DIR="$root/artifacts" node --test --test-timeout=300000 --test-reporter=spec web/e2e/console.test.mjs
echo "screenshot: artifacts/console.png"
