#!/usr/bin/env bash
# Runs the conformance suite against Mosquitto (started here on free
# loopback ports, killed by PID afterwards) and against the in-process
# Beacon, records both outcomes in conformance/results/*.json and
# regenerates conformance/COVERAGE.md.
#
# Usage: conformance/compare.sh            (from anywhere in the repository)
# Needs: /usr/sbin/mosquitto (Debian package "mosquitto"), /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
work=$(mktemp -d)
mosq_pid=""
cleanup() {
	if [[ -n "$mosq_pid" ]]; then kill "$mosq_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tcp_port=$(free_port)
ws_port=$(free_port)
cat >"$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
listener $tcp_port 127.0.0.1
protocol mqtt
listener $ws_port
bind_interface lo
protocol websockets
CONF
"$MOSQUITTO" -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
mosq_pid=$!
for _ in $(seq 50); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$tcp_port") 2>/dev/null; then break; fi
	sleep 0.1
done
mosq_version=$("$MOSQUITTO" -h 2>/dev/null | head -1 || true)

echo "== Mosquitto ($mosq_version) on 127.0.0.1:$tcp_port, ws :$ws_port"
BEACON_CONFORMANCE_ADDR="127.0.0.1:$tcp_port" BEACON_CONFORMANCE_WS_ADDR="127.0.0.1:$ws_port" \
	go test ./conformance -count=1 -json -run '^TestMQTT' >"$work/mosquitto.jsonl" || true
kill "$mosq_pid"; wait "$mosq_pid" 2>/dev/null || true; mosq_pid=""

echo "== Beacon (in-process)"
go test ./conformance -count=1 -json -run '^TestMQTT' >"$work/beacon.jsonl" || true

go test ./conformance -count=1 -run '^TestWriteResults$' -v \
	-results-from="$work/mosquitto.jsonl" -results-out="$PWD/conformance/results/mosquitto.json" \
	-results-broker="$mosq_version (Debian)" -results-target="TCP and WebSocket on 127.0.0.1, allow_anonymous, persistence off"
go test ./conformance -count=1 -run '^TestWriteResults$' -v \
	-results-from="$work/beacon.jsonl" -results-out="$PWD/conformance/results/beacon.json" \
	-results-broker="Beacon (this tree)" -results-target="in-process, memory store"
go test ./conformance -count=1 -run '^TestCoverage$' -update
echo "== conformance/COVERAGE.md regenerated"
