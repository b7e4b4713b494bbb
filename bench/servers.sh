#!/usr/bin/env bash
# The gateway app under three HTTP servers in one harness run: aigw's own (aigw serve), granian and
# uvicorn (both host aigw.factory:create_app with bench/aigw-bench.yaml), JSON and stream, each
# server ROUNDS times (default 2), interleaved with the order rotated each round. Prints one table:
# median and min-max of req/s, gateway CPU µs per request, p50/p99 latency and RSS.
#   bench/servers.sh                   # ~2.5 min per round
#   ROUNDS=3 bench/servers.sh --quick  # any run.py flags pass through (--gw-cpus, --duration, ...)
# Needs what bench/run.sh needs, plus the bench extra: .venv/bin/pip install -e '.[bench]'.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for server in granian uvicorn; do
  [ -x "$ROOT/.venv/bin/$server" ] || { echo "bench/servers.sh: $server is not installed: $ROOT/.venv/bin/pip install -e '.[bench]'" >&2; exit 2; }
done
ROUNDS="${ROUNDS:-2}"
servers=(aigw aigw-granian aigw-uvicorn)
order=()
for ((round = 0; round < ROUNDS; round++)); do
  for ((i = 0; i < ${#servers[@]}; i++)); do order+=("${servers[(i + round) % ${#servers[@]}]}"); done
done
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/servers-$(date -u +%Y%m%dT%H%M%SZ)"
targets="$(IFS=,; echo "${order[*]}")"
"$ROOT/bench/run.sh" --targets "$targets" --out "$OUT" "$@"
echo
python3 "$ROOT/bench/servers.py" "$OUT.json" | tee "$OUT.servers.md"
