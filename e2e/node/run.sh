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

command -v go >/dev/null || { echo "e2e-node: go not found on PATH" >&2; exit 1; }
command -v node >/dev/null || { echo "e2e-node: node not found on PATH (Node.js 18+ needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "e2e-node: npm not found on PATH" >&2; exit 1; }

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
	if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[e2e-node] %s\n' "$*"; }

log "building callcontrold"
go build -o "$tmp/callcontrold" ./cmd/callcontrold

free_port() {
	node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

probe() { go tool -modfile=tools/go.mod grpc-health-probe "$@"; }

# Start the server; a port taken between free_port and the listen is
# retried on a new port.
addr=""
for attempt in 1 2 3; do
	port="$(free_port)"
	addr="127.0.0.1:$port"
	http_addr="127.0.0.1:$(free_port)"
	log "starting callcontrold on $addr, HTTP on $http_addr (attempt $attempt)"
	"$tmp/callcontrold" --addr="$addr" --metrics-addr= --http-addr="$http_addr" --progress-interval=1s --shutdown-timeout=5s \
		>"$tmp/server.log" 2>&1 &
	server_pid=$!
	ready=""
	for _ in $(seq 300); do
		if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
		if probe -addr="$addr" -connect-timeout=1s -rpc-timeout=1s >/dev/null 2>&1; then ready=1; break; fi
		sleep 0.2
	done
	if [[ -n "$ready" ]]; then break; fi
	if ! kill -0 "$server_pid" 2>/dev/null && grep -q 'address already in use' "$tmp/server.log" && [[ $attempt -lt 3 ]]; then
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
		continue
	fi
	log "FAIL: callcontrold did not become SERVING on $addr"
	probe -addr="$addr" -connect-timeout=1s -rpc-timeout=1s || true
	sed 's/^/[server] /' "$tmp/server.log" >&2
	exit 1
done
log "callcontrold is SERVING on $addr"

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
node client.mjs "$addr" && node connect-client.mjs "http://$http_addr"
code=$?
set -e
if [[ $code -ne 0 ]]; then
	log "client failed (exit $code); server log:"
	sed 's/^/[server] /' "$tmp/server.log" >&2
fi
exit "$code"
