"""
Summarises the JSON files that ``python -m twisted_mtls.bench --json`` wrote,
one per server: the server-side cost figures per server, then the ratios of
twisted-mtls to each baseline (above 1.00: twisted-mtls spends more).

    python benchmarks/report.py benchmarks/out/*.json
"""

import json
import os
import sys

SUBJECT = "twisted-mtls"
# phase: (cost column, key, format), (throughput column, key, format)
COLUMNS = {
    "handshake": (("full handshake µs CPU", "us_cpu_per_op", "{:.0f}"), ("handshakes/s", "rate", "{:.0f}")),
    "resumed": (("resumed handshake µs CPU", "us_cpu_per_op", "{:.0f}"), ("resumed/s", "rate", "{:.0f}")),
    "line64": (("64 B line ns CPU", "ns_cpu_per_line", "{:.0f}"), ("64 B lines/s", "rate", "{:.0f}")),
    "line16k": (("16 KiB lines ms CPU/MB", "ms_cpu_per_mb", "{:.2f}"), ("16 KiB MB/s", "mb_per_s", "{:.0f}")),
    "idle": (("idle KB RSS/conn", "kb_rss_per_conn", "{:.1f}"), ("idle conns held", "still_open", "{}")),
}
FIGURES = [(title, phase, key, fmt) for phase, ((title, key, fmt), _) in COLUMNS.items()]
RATES = [(title, phase, key, fmt) for phase, (_, (title, key, fmt)) in COLUMNS.items()]


def value(report, phase, key):
    return report["phases"].get(phase, {}).get(key)


def pipe_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def figure_rows(reports, figures):
    rows = []
    for name, report in reports.items():
        cells = [name]
        for _, phase, key, fmt in figures:
            v = value(report, phase, key)
            cells.append("-" if v is None else fmt.format(v))
        rows.append(cells)
    return rows


def main(paths):
    reports = {}
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        reports[report.get("label") or os.path.basename(path).rsplit(".", 1)[0]] = report
    settings = next(iter(reports.values()))["settings"]
    print(
        "Server cost per operation (lower is better); "
        f"{settings['seconds']:g}s per phase, {settings['connections']} connections, "
        f"idle figure at {settings['idle']} connections:\n"
    )
    print(pipe_table(["server", *(f[0] for f in FIGURES)], figure_rows(reports, FIGURES)))
    print("\nThroughput on the same runs (bounded by one core each for server and load generator):\n")
    print(pipe_table(["server", *(f[0] for f in RATES)], figure_rows(reports, RATES)))
    warnings = []
    for name, report in reports.items():
        for phase, r in report["phases"].items():
            if "error" in r:
                warnings.append(f"{name} {phase}: FAILED: {r['error']}")
            elif phase == "resumed" and r["resumed"] != r["ops"]:
                warnings.append(f"{name} resumed: only {r['resumed']} of {r['ops']} handshakes resumed")
            elif r.get("errors"):
                warnings.append(f"{name} {phase}: {r['errors']} connection errors, first: {r.get('first_error')}")
            elif phase == "idle" and r["still_open"] != r["ops"]:
                warnings.append(f"{name} idle: only {r['still_open']} of {r['ops']} connections stayed open")
    if SUBJECT in reports:
        rows = []
        for name, report in reports.items():
            if name == SUBJECT:
                continue
            cells = [f"{SUBJECT} / {name}"]
            for _, phase, key, _ in FIGURES:
                mine, theirs = value(reports[SUBJECT], phase, key), value(report, phase, key)
                cells.append(f"{mine / theirs:.2f}" if mine is not None and theirs else "-")
            rows.append(cells)
        if rows:
            print(f"\nRatios ({SUBJECT} cost divided by the baseline's; above 1.00: {SUBJECT} spends more):\n")
            print(pipe_table(["", *(f[0] for f in FIGURES)], rows))
    else:
        print(f"\n(no {SUBJECT} results: no ratios)")
    if warnings:
        print("\nWarnings:\n" + "\n".join("  " + w for w in warnings))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    main(sys.argv[1:])
