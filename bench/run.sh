#!/usr/bin/env bash
# Run the shared overhead benchmark (../shared/bench) with aigw as a target beside the others.
#   bench/run.sh                                   # all targets, the full run
#   bench/run.sh --targets direct,aigw --quick     # any run.py flags pass through
# Needs: the harness (../shared/bench, or BENCH_HARNESS), aigw installed in .venv (the README's first
# command), and nginx + wrk (the harness's setup.sh installs them; the litellm/portkey targets need the rest).
set -euo pipefail
export AIGW_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${BENCH_HARNESS:-$AIGW_ROOT/../shared/bench}"
need() { echo "bench/run.sh: $1" >&2; exit 2; }
[ -f "$HARNESS/run.py" ] || need "no benchmark harness at $HARNESS (set BENCH_HARNESS to its folder)"
[ -x "$AIGW_ROOT/.venv/bin/aigw" ] || need "aigw is not installed: run the README's first command (it creates .venv)"
command -v nginx >/dev/null && command -v wrk >/dev/null || need "nginx and wrk are needed: run $HARNESS/setup.sh (or apt-get install nginx-light wrk)"
if [ ! -w "$HARNESS" ]; then  # the shared folder may be read-only: run from a copy
  COPY="${TMPDIR:-/tmp}/aigw-bench-harness"
  mkdir -p "$COPY" && cp -r "$HARNESS/." "$COPY/" && HARNESS="$COPY"
fi
export AIGW_DATA_DIR="$(mktemp -d)"
trap 'rm -rf "$AIGW_DATA_DIR"' EXIT
AIGW="$AIGW_ROOT/.venv/bin/aigw"
TOKEN="$("$AIGW" tokens create --name bench --create-principal)"
for endpoint in mock-json mock-stream; do "$AIGW" grants add "$endpoint" --user bench 2>/dev/null; done
sed "s/{aigw_token}/$TOKEN/" "$AIGW_ROOT/bench/targets.toml" > "$AIGW_DATA_DIR/targets.toml"
cd "$HARNESS" && exec python3 run.py --targets-file "$AIGW_DATA_DIR/targets.toml" "$@"
