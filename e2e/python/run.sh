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
# shellcheck source=../lib.sh
source "$root/e2e/lib.sh"

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
	log "installing ${packages[*]}"
	bash scripts/apt-install.sh "${packages[@]}"
fi

tmp="$(mktemp -d)"
cleanup() {
	stop_callcontrold
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building callcontrold and writing the API's descriptors"
go build -o "$tmp/callcontrold" ./cmd/callcontrold
go run ./e2e/python/descriptors -o "$tmp/callcontrol.binpb"

log "starting callcontrold"
start_callcontrold "$tmp/callcontrold" "$tmp/server.log"
addr="$grpc_addr"
log "callcontrold is SERVING on $addr (HTTP $http_url)"

set +e
"$python" "$here/client.py" "$addr" "$tmp/callcontrol.binpb"
code=$?
set -e
if [[ $code -ne 0 ]]; then
	log "client failed (exit $code); server log:"
	sed 's/^/[server] /' "$tmp/server.log" >&2
fi
exit "$code"
