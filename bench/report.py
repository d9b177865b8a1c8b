"""The stdout table of a run (the JSON file has everything)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_f(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=False))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=False)) for row in cells]
    return "\n".join(out)


def render(r: dict[str, Any]) -> str:
    env = r.get("environment", {})
    parts = [
        f"benchmark {r['started_at']}  profile={r['profile']}  model={r['model']}  "
        f"torch threads={env.get('torch_num_threads')} (OMP_NUM_THREADS={env.get('OMP_NUM_THREADS')})  "
        f"cpus={env.get('cpu_count')}  load avg at start={_f(r['load_average_at_start'][0], 2)}",
    ]
    if r.get("machine_busy"):
        parts.append(
            "WARNING: the machine was busy (1-min load average "
            f"{_f(r['load_average_at_start'][0], 1)} at start, {_f(r['load_average_at_end'][0], 1)} at end, "
            f"{env.get('cpu_count')} CPUs): these numbers measure the neighbours as much as the server"
        )
    ceiling = r["raw"]["ceiling"]
    parts.append("\n1. raw in-process forward (no server): the ceiling")
    parts.append(
        _table(
            ["batch", "items/s", "batch p50 ms", "ms/item"],
            [
                [b["batch_size"], b["items_per_s"], b["batch_p50_ms"], b["per_item_ms"]]
                for b in ceiling["batches"]
            ],
        )
    )
    parts.append(
        f"   image preparation (decode+resize+normalise), p50 {_f(ceiling['prepare_per_image']['p50_ms'])} "
        "ms/image, paid by the server on top"
    )

    rows = []
    def load_row(contender: str, row: dict[str, Any]) -> list[Any]:
        keys = ("concurrency", "throughput_rps", "p50_ms", "p99_ms", "errors", "ok")
        return [contender, *(row[key] for key in keys)]

    for mode, data in r["server"]["modes"].items():
        rows.extend(load_row(f"ours {mode.replace('batching_', 'batch ')}", row) for row in data["rows"])
    rows.extend(load_row("FastAPI+pipeline", row) for row in r["baseline"]["rows"])
    parts.append(f"\n2./3. servers under closed-loop load ({r['server']['protocol']})")
    parts.append(_table(["contender", "conc", "req/s", "p50 ms", "p99 ms", "errors", "ok"], rows))

    overhead = r["overhead"]
    parts.append(
        f"\n4. framework overhead: near-zero model, {overhead['image_size']}px JPEG, sequential requests"
    )
    rows = [
        [
            name,
            v["server_p50_ms"],
            overhead["server"][name]["p99_ms"],
            v["minus_in_process_path_ms"],
            v["minus_echo_ms"],
        ]
        for name, v in overhead["added_p50_ms"].items()
    ]
    rows.append(
        [
            "bare uvicorn echo",
            overhead["echo_v2_binary"]["p50_ms"],
            overhead["echo_v2_binary"]["p99_ms"],
            None,
            None,
        ]
    )
    for path in overhead["in_process_path"]:
        rows.append([f"in-process path ({path['model']})", path["p50_ms"], path["p99_ms"], None, None])
    parts.append(
        _table(
            ["protocol", "p50 ms", "p99 ms", "added vs in-process", "added vs echo"],
            [
                [c if isinstance(c, str) else (None if c is None else round(c, 2)) for c in row]
                for row in rows
            ],
        )
    )

    o = r["overload"]
    ov = o["overload"]
    parts.append(
        f"\n5. overload: {_f(o['offered_rps'], 2)} req/s offered ({r['settings']['overload_factor']}x "
        f"{_f(o['capacity_rps'], 2)}) for {o['seconds']} s, max_queue={o['max_queue']}, "
        f"max_queue_delay_ms={o.get('max_queue_delay_ms', 0)}"
    )
    parts.append(
        _table(
            [
                "sent",
                "200",
                "503",
                "504",
                "other 5xx",
                "transport err",
                "accepted p50",
                "accepted p99",
                "unloaded p99",
                "ratio",
                "health fails",
                "healthy after",
            ],
            [
                [
                    ov["requests"],
                    ov["ok"],
                    ov["statuses"].get("503", 0),
                    ov["statuses"].get("504", 0),
                    o["other_5xx"],
                    o["transport_errors"],
                    ov["p50_ms"],
                    ov["p99_ms"],
                    o["unloaded_p99_ms"],
                    o["p99_ratio"],
                    o["health"]["failures"],
                    str(o["healthy_after"]),
                ]
            ],
        )
    )

    parts.append("\ntargets")
    parts.append(
        _table(
            ["target", "value", "met", "goal"],
            [
                [name, _f(t["value"], 2), "yes" if t["met"] else "NO", t["goal"]]
                for name, t in r["targets"].items()
            ],
        )
    )
    parts.append(f"\nwall time {r['wall_s']} s; load avg at end {_f(r['load_average_at_end'][0], 2)}")
    return "\n".join(parts)
