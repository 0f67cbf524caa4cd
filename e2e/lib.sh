# Shared by the e2e clients' run.sh scripts (source it; needs bash):
# starting the callcontrold binary on ephemeral loopback ports, waiting
# until it serves, and stopping it.
#
# The server binds port 0 and the script reads the ports it got from its
# log, so no port is chosen ahead of time and none can be taken by
# another process in between.

# start_callcontrold BIN LOG [ARG...] starts BIN with ARGs on 127.0.0.1:0
# (gRPC) and 127.0.0.1:0 (HTTP), logging to LOG, and waits until the gRPC
# health check says SERVING. It sets server_pid, grpc_addr (host:port)
# and http_url (http://host:port). On failure it prints the log and
# returns 1.
start_callcontrold() {
	local bin="$1" logfile="$2"
	shift 2
	"$bin" --addr=127.0.0.1:0 --http-addr=127.0.0.1:0 --metrics-addr= --progress-interval=1s --shutdown-timeout=5s \
		"$@" >"$logfile" 2>&1 &
	server_pid=$!
	grpc_addr="" http_url=""
	local _
	for _ in $(seq 300); do
		if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
		grpc_addr="$(sed -n 's/.*msg=serving addr=\([0-9.]*:[0-9]*\).*/\1/p' "$logfile" | head -1)"
		http_url="$(sed -n 's/.*url=\(http:\/\/[0-9.]*:[0-9]*\)\/.*/\1/p' "$logfile" | head -1)"
		if [[ -n "$grpc_addr" ]] &&
			go tool -modfile=tools/go.mod grpc-health-probe -addr="$grpc_addr" -connect-timeout=1s -rpc-timeout=1s >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	echo "callcontrold did not become SERVING (gRPC address: ${grpc_addr:-not logged}); its log:" >&2
	sed 's/^/[server] /' "$logfile" >&2
	return 1
}

# stop_callcontrold sends SIGTERM (a drain), and SIGKILL if the server is
# still there after 5 s.
stop_callcontrold() {
	[[ -n "${server_pid:-}" ]] && kill -0 "$server_pid" 2>/dev/null || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	local _
	for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
}
