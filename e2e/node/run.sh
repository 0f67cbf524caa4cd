#!/usr/bin/env bash
# Node.js clients against the running callcontrold binary: @grpc/grpc-js on
# the gRPC port (client.mjs), then the generated TypeScript client with
# connect-node on the HTTP port, Connect and gRPC-Web (connect-client.mjs).
# Builds the binary, starts it on free loopback ports, waits for the gRPC
# health check to say SERVING, installs the clients' locked dependencies
# (npm ci, when node_modules is absent or older than the lock file) and
# runs both clients. The server is stopped on exit; the exit status is the
# clients'.
#
# Run from anywhere: bash e2e/node/run.sh   (or: make e2e-node)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
# shellcheck source=../lib.sh
source "$root/e2e/lib.sh"

command -v go >/dev/null || { echo "e2e-node: go not found on PATH" >&2; exit 1; }
command -v node >/dev/null || { echo "e2e-node: node not found on PATH (Node.js 18+ needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "e2e-node: npm not found on PATH" >&2; exit 1; }

tmp="$(mktemp -d)"
cleanup() {
	stop_callcontrold
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[e2e-node] %s\n' "$*"; }

log "building callcontrold"
go build -o "$tmp/callcontrold" ./cmd/callcontrold

log "starting callcontrold"
start_callcontrold "$tmp/callcontrold" "$tmp/server.log"
addr="$grpc_addr"
log "callcontrold is SERVING on $addr (HTTP $http_url)"

# Both packages' locked dependencies, installed when missing or stale:
# e2e/node's, and web/'s (the generated client in web/gen imports
# @bufbuild/protobuf from there).
for dir in "$here" "$root/web"; do
	if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
		log "npm ci in ${dir#"$root"/}"
		(cd "$dir" && npm ci --no-audit --no-fund)
	fi
done
cd "$here"

set +e
node client.mjs "$addr" && node connect-client.mjs "$http_url"
code=$?
set -e
if [[ $code -ne 0 ]]; then
	log "client failed (exit $code); server log:"
	sed 's/^/[server] /' "$tmp/server.log" >&2
fi
exit "$code"
