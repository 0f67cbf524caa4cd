#!/usr/bin/env bash
# Python (grpcio) client against the running callcontrold binary: installs
# Debian's python3-grpcio and python3-protobuf when the system Python
# lacks them (apt-get as root, or through sudo), builds the binary, starts
# it on a free loopback port, waits for the gRPC health check to say
# SERVING, writes the API's descriptors to a temporary directory (the
# client builds its messages from them at run time: nothing generated is
# committed, so nothing can go stale) and runs client.py. The server is
# stopped on exit; the exit status is the client's.
#
# Debian's python3-grpc-tools is not used: its bundled protoc (3.5) cannot
# compile proto3 `optional` fields, which call.proto has.
#
# Run from anywhere: bash e2e/python/run.sh   (or: make e2e-python)
# PYTHON selects the interpreter (default /usr/bin/python3, the one
# Debian's packages install into).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

log() { printf '[e2e-python] %s\n' "$*"; }

python="${PYTHON:-/usr/bin/python3}"
command -v go >/dev/null || { echo "e2e-python: go not found on PATH" >&2; exit 1; }
command -v "$python" >/dev/null || { echo "e2e-python: $python not found (set PYTHON)" >&2; exit 1; }

packages=(python3-grpcio python3-protobuf)
if ! "$python" -c 'import grpc, google.protobuf' 2>/dev/null; then
	if [[ "$python" != /usr/bin/python3 ]]; then
		echo "e2e-python: $python lacks grpcio or protobuf: install them for it, or use /usr/bin/python3" >&2
		exit 1
	fi
	if ((EUID == 0)); then
		as_root=()
	elif command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		echo "e2e-python: not root and no sudo: install ${packages[*]} (Debian packages) and rerun" >&2
		exit 1
	fi
	log "installing ${packages[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${as_root[@]}" apt-get update -qq
	"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

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

log "building callcontrold and writing the API's descriptors"
go build -o "$tmp/callcontrold" ./cmd/callcontrold
go run ./e2e/python/descriptors -o "$tmp/callcontrol.binpb"

free_port() {
	"$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

probe() { go tool -modfile=tools/go.mod grpc-health-probe "$@"; }

# Start the server; a port taken between free_port and the listen is
# retried on a new port.
addr=""
for attempt in 1 2 3; do
	port="$(free_port)"
	addr="127.0.0.1:$port"
	log "starting callcontrold on $addr (attempt $attempt)"
	"$tmp/callcontrold" --addr="$addr" --metrics-addr= --http-addr= --progress-interval=1s --shutdown-timeout=5s \
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

set +e
"$python" "$here/client.py" "$addr" "$tmp/callcontrol.binpb"
code=$?
set -e
if [[ $code -ne 0 ]]; then
	log "client failed (exit $code); server log:"
	sed 's/^/[server] /' "$tmp/server.log" >&2
fi
exit "$code"
