"""The results as a text table (stdout), a JSON file and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], Any]]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    cells = [[header for header, _ in columns]]
    cells += [[fmt(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def percent(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else round(100 * part / whole, 1)


def latency(key: str) -> Callable[[Row], Any]:
    return lambda row: row["latency_ms"][key]


def errors(row: Row) -> str:
    return ",".join(f"{kind}:{n}" for kind, n in row["errors"].items()) or "0"


def valid(row: Row) -> bool:
    """An open-loop row whose generator and CPU wait were in bounds (loadgen.invalid_reasons)."""
    return not row.get("invalid")


def validity(row: Row) -> str:
    return "yes" if valid(row) else "NO: " + ", ".join(row["invalid"])


OPEN_LOOP: list[Column] = [
    ("server", lambda r: r["server"]),
    ("mode", lambda r: r["mode"]),
    ("task s", lambda r: r["task_seconds"]),
    ("p50 ms", latency("p50")),
    ("p90 ms", latency("p90")),
    ("p99 ms", latency("p99")),
    ("max ms", latency("max")),
    ("req/s", lambda r: r["throughput_rps"]),
    ("ok", lambda r: r["ok"]),
    ("errors", errors),
    ("lag p99", lambda r: r["send_lag_ms"]["p99"]),
    ("client cpu%", lambda r: percent(r["client_cpu_s"], r["wall_s"])),
    ("server cpu%", lambda r: percent(r["server_cpu_s"], r["wall_s"])),
    ("cpu wait%", lambda r: r.get("cpu_wait_pct")),
    ("psi%", lambda r: r["cpu_pressure_pct"]),
    ("valid", validity),
]
HIGH_LOAD: list[Column] = [
    OPEN_LOOP[0],
    ("load", lambda r: f"{r['load']:.0%}"),
    ("rate", lambda r: r["rate"]),
    *OPEN_LOOP[1:],
]
PEAK: list[Column] = [
    ("server", lambda r: r["server"]),
    ("tool", lambda r: r["tool"]),
    ("mode", lambda r: r.get("mode", "keepalive")),
    ("conns", lambda r: r["connections"]),
    ("req/s", lambda r: r["throughput_rps"]),
    ("p50 ms", latency("p50")),
    ("p99 ms", latency("p99")),
    ("errors", errors),
    ("client cpu s", lambda r: r["client_cpu_s"]),
    ("wall s", lambda r: r["wall_s"]),
    ("server cpu%", lambda r: percent(r["server_cpu_s"], r["wall_s"])),
    ("psi%", lambda r: r["cpu_pressure_pct"]),
]
MEMORY: list[Column] = [
    ("server", lambda r: r["server"]),
    ("mode", lambda r: r["mode"]),
    ("pending tasks", lambda r: r["ok"]),
    ("RSS before MiB", lambda r: round(r["rss_before"] / 2**20, 1)),
    ("RSS after MiB", lambda r: round(r["rss_after"] / 2**20, 1)),
    ("bytes/task", lambda r: r["bytes_per_task"]),
    ("errors", errors),
]


CAPACITY: list[Column] = [
    ("server", lambda r: r["server"]),
    ("mode", lambda r: r["mode"]),
    ("capacity req/s", lambda r: r["capacity_rps"]),
    ("server cpu% there", lambda r: r.get("server_cpu_pct")),
    ("probes (req/s: kept up?, server cpu%)", lambda r: ", ".join(
        f"{p['rate']:.0f}:{'y' if p['kept_up'] else 'n'}"
        + (f" {p['server_cpu_pct']:.0f}%" if p.get("server_cpu_pct") is not None else "")
        + ("!" if p.get("invalid") else "")
        for p in r["probes"]
    )),
]  # fmt: skip


def peak_configs(rows: Sequence[Row]) -> list[tuple[int, str]]:
    configs = {(r["connections"], r.get("mode", "keepalive")) for r in rows}
    return sorted(configs, key=lambda config: (config[0], config[1] != "keepalive"))


def peak_pivot(rows: Sequence[Row], divide_by: str | None) -> str:
    """One row per server, one column per (connections, mode): req/s, or its ratio to a server."""
    configs = peak_configs(rows)
    rps = {(r["server"], r["connections"], r.get("mode", "keepalive")): r for r in rows}
    servers = list(dict.fromkeys(r["server"] for r in rows))

    def cell(server: str, config: tuple[int, str]) -> float | None:
        row = rps.get((server, *config))
        if row is None:
            return None
        if divide_by is None:
            return float(row["throughput_rps"])
        base = rps.get((divide_by, *config))
        return None if base is None else round(row["throughput_rps"] / base["throughput_rps"], 2)

    columns: list[Column] = [("server", lambda r: r)]
    for config in configs:
        columns.append((f"c={config[0]} {config[1]}", partial(cell, config=config)))
    shown = [s for s in servers if divide_by is None or s != divide_by]
    return table(shown, columns)


def p99_ratios(rows: Sequence[Row]) -> str:
    """p99 with tasks of each duration over p99 with no task, per server, mode and load.

    A row that is not valid (`valid`) is not published: its cells read "invalid".
    """
    groups: dict[tuple[str, str, Any], dict[float, float | None]] = {}
    for r in rows:
        key = (r["server"], r["mode"], r.get("load"))
        if r["latency_ms"]["p99"] is not None and r["task_seconds"] is not None:
            groups.setdefault(key, {})[r["task_seconds"]] = (
                r["latency_ms"]["p99"] if valid(r) else None
            )
    durations = sorted({d for g in groups.values() for d in g if d})
    columns: list[Column] = [
        ("server", lambda k: k[0][0]),
        ("mode", lambda k: k[0][1]),
        ("load", lambda k: "-" if k[0][2] is None else f"{k[0][2]:.0%}"),
        ("p99 ms, no task", lambda k: k[1][0.0] if k[1][0.0] is not None else "invalid"),
    ]
    for d in durations:
        columns.append((f"{d:g} s / none", partial(ratio, duration=d)))
    return table([(k, g) for k, g in groups.items() if 0.0 in g], columns)


def ratio(item: tuple[Any, dict[float, float | None]], duration: float) -> float | str | None:
    p99s = item[1]
    if duration not in p99s:
        return None
    with_tasks, without = p99s[duration], p99s[0.0]
    if with_tasks is None or without is None:
        return "invalid"
    return round(with_tasks / without, 2) if without else None


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    parts = [
        f"rawbg benchmarks ({meta['profile']}): {meta['machine']}, "
        f"{meta['duration_s']:.0f} s in total",
        f"\nOpen loop, {meta['settings']['rate']} req/s for {meta['settings']['seconds']} s "
        "(latency from the scheduled send):\n" + table(results["open_loop"], OPEN_LOOP),
        "\nPeak throughput, closed loop (0 s tasks; demo: `python -m rawbg`, whose task "
        "writes log.txt from the thread pool):\n" + table(results["peak"], PEAK),
    ]
    if results["peak"]:
        parts += [
            "\nPeak req/s by connections and mode:\n" + peak_pivot(results["peak"], None),
            "\nPeak against the ceiling (server / ceiling):\n"
            + peak_pivot(results["peak"], "ceiling"),
            "\nPeak against rawbg on asyncio (server / rawbg):\n"
            + peak_pivot(results["peak"], "rawbg"),
        ]
    if results.get("capacity"):
        parts.append(
            "\nOpen-loop capacity (0 s tasks), the base of the high-load sweep:\n"
            + table(results["capacity"], CAPACITY)
        )
    if results.get("high_load"):
        parts += [
            "\nOpen loop at high load (fractions of each server's capacity):\n"
            + table(results["high_load"], HIGH_LOAD),
        ]
    p99_rows = [*results["open_loop"], *results.get("high_load", [])]
    if any(r["task_seconds"] for r in p99_rows):
        parts.append(
            "\np99 with tasks pending over p99 with none (open loop; load '-': "
            f"{meta['settings']['rate']} req/s):\n" + p99_ratios(p99_rows)
        )
    parts.append("\nMemory per pending task:\n" + table(results["memory"], MEMORY))
    if counts := results.get("instructions"):
        lines = [f"{server:12} {count:10,.0f}" for server, count in counts.items()]
        lines += [
            f"ceiling / {server}: {counts['ceiling'] / count:.3f}"
            for server, count in counts.items()
            if server != "ceiling" and "ceiling" in counts
        ]
        parts.append("\nInstructions per request (callgrind, loop side only):\n" + "\n".join(lines))
    parts += [f"note: {note}" for note in results["notes"]]
    return "\n".join(parts)


def write_json(results: dict[str, Any], out: Path) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


ZERO_AT = 1e-3  # where 0 s tasks sit on the log axis
COLORS = {
    "rawbg": "tab:blue",
    "rawbg-uvloop": "tab:cyan",
    "ceiling": "grey",
    "fastapi": "tab:red",
    "fastapi-std": "tab:orange",
    "starlette-std": "tab:green",
    "fastapi-granian": "tab:purple",
}


def plot(results: dict[str, Any], out: Path) -> Path | None:
    """p50 and p99 against task duration (log axis), one line per server and mode.

    Returns None when matplotlib is not installed. The ceiling has no
    background work: it is drawn as a horizontal line.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    durations = sorted({r["task_seconds"] for r in results["open_loop"] if r["task_seconds"]})
    ticks = [ZERO_AT, *durations]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    series: dict[tuple[str, str], list[Row]] = {}
    for row in results["open_loop"]:
        series.setdefault((row["server"], row["mode"]), []).append(row)
    for ax, key in zip(axes, ("p50", "p99"), strict=True):
        for (server, mode), rows in series.items():
            style = "-" if mode == "keepalive" else "--"
            label = f"{server} {mode}"
            points = [
                (r["task_seconds"] or ZERO_AT, r["latency_ms"][key])
                for r in rows
                if r["latency_ms"][key] is not None
            ]
            color = COLORS.get(server)
            if server == "ceiling" and points:
                ax.axhline(points[0][1], linestyle=style, color=color, label=label)
            elif points:
                ax.plot(*zip(*points, strict=True), style, color=color, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks, ["0", *(f"{d:g}" for d in durations)])
        ax.set_xlabel("background task duration (s)")
        ax.set_title(f"{key} latency, open loop at {results['meta']['settings']['rate']} req/s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[1].legend(fontsize="small")
    figure.tight_layout()
    path = out / "latency.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
