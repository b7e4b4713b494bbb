#!/usr/bin/env python3
"""The server comparison table from one harness results file (bench/servers.sh writes it): per
server, the median over its runs and the spread (min-max) of req/s, gateway CPU µs per request,
p50/p99 latency and RSS, JSON and stream.

    python3 bench/servers.py bench/results/servers-<stamp>.json [more.json ...]

Several files (runs with the same parameters) are pooled: each server's runs from all of them.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

LABELS = {"aigw": "aigw's own", "aigw-granian": "granian (ASGI, 1 worker)", "aigw-uvicorn": "uvicorn (uvloop, httptools)"}


def _values(runs: list[dict], scenario: str, label: str, key: str) -> list[float]:
    out = []
    for run in runs:
        value = (((run.get("scenarios") or {}).get(scenario) or {}).get(label) or {}).get(key)
        if value is not None:
            out.append(float(value))
    return out


def _cell(values: list[float], fmt: str = "{:,.0f}", scale: float = 1.0) -> str:
    """Median, and the min-max range when there is more than one run."""
    if not values:
        return "–"
    values = [v * scale for v in values]
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def table(result: dict) -> str:
    params = result["meta"]["params"]
    conc, lat_conc = params["conc"], params["lat_conc"]
    by_name: dict[str, list[dict]] = {}
    for run in result["targets"]:
        by_name.setdefault(run["name"], []).append(run)
    lines = [
        f"| server | runs | JSON req/s @c{conc} | stream req/s @c{conc} | CPU µs/req JSON | CPU µs/req stream "
        f"| JSON p50 / p99 ms @c{conc} | stream p50 / p99 ms @c{conc} | JSON p50 / p99 ms @c{lat_conc} "
        f"| stream p50 / p99 ms @c{lat_conc} | errors | RSS after (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in by_name.items():
        ok = [r for r in runs if r.get("ok")]
        version = re.search(r"\d+\.\d+(\.\d+)?", runs[0].get("version") or "")
        label = f"{LABELS.get(name, name)}{f' {version.group(0)}' if version else ''}"
        if not ok:
            error = (runs[0].get("error") or "check failed").splitlines()[0][:80]
            lines.append(f"| {label} | 0/{len(runs)} | failed: {error} |" + " |" * 10)
            continue
        ms = "{:.2f}"

        def latency(scenario: str, run_label: str) -> str:
            p50 = _values(ok, scenario, run_label, "p50_us")
            p99 = _values(ok, scenario, run_label, "p99_us")
            return f"{_cell(p50, ms, 1e-3)} / {_cell(p99, ms, 1e-3)}"

        errors = sum(sum(_values(ok, s, lab, "errors")) for s in ("json", "stream") for lab in ("tput", "lat"))
        rss = [r["mem_after"]["rss_kb"] / 1024 for r in ok if r.get("mem_after")]
        procs = max((r["mem_after"].get("procs", 1) for r in ok if r.get("mem_after")), default=1)
        lines.append(
            f"| {label} | {len(ok)} | {_cell(_values(ok, 'json', 'tput', 'rps'))} "
            f"| {_cell(_values(ok, 'stream', 'tput', 'rps'))} "
            f"| {_cell(_values(ok, 'json', 'tput', 'gw_cpu_us_per_req'))} "
            f"| {_cell(_values(ok, 'stream', 'tput', 'gw_cpu_us_per_req'))} "
            f"| {latency('json', 'tput')} | {latency('stream', 'tput')} "
            f"| {latency('json', 'lat')} | {latency('stream', 'lat')} | {errors:.0f} | {_cell(rss)}{f' ({procs} processes)' if procs > 1 else ''} |"
        )
    notes = (
        f"Median of each server's runs (min–max in brackets); runs interleaved. Gateway pinned to CPU "
        f"{params['gw_cpus'] or '-'}, wrk and the nginx upstream to CPU {params['lg_cpus'] or '-'}; "
        f"{params['duration_s']} s at c{conc}, {params['lat_duration_s']} s at c{lat_conc}. CPU µs/req: the "
        f"gateway's process group CPU time over the c{conc} run / requests. RSS: the process group's, after the run "
        f"(granian runs a supervisor process beside its worker)."
    )
    return "\n".join(lines) + "\n\n" + notes


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = [json.loads(Path(name).read_text()) for name in sys.argv[1:]]
    pooled = {"meta": results[0]["meta"], "targets": [t for r in results for t in r["targets"]]}
    print(table(pooled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
