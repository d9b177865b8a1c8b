"""The stdout table of a run (the JSON file has everything)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def section_header(title: str, r: dict[str, Any], details: str = "") -> list[str]:
    """The first lines of a `python -m bench SECTION` report: what ran, when and where, and whether the machine
    was busy (`harness.close_run`)."""
    parts = [f"{title}  {r['started_at']}  profile={r['profile']}  model={r['model']}  threads={r['threads']}  "
             f"{details + '  ' if details else ''}load avg at start={_f(r['load_average_at_start'][0], 2)}"]
    if r["machine_busy"]:
        parts.append("WARNING: the machine was busy: these numbers measure the neighbours as much as the server")
    return parts


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
    if "raw" in r:
        parts.append(render_study(r))
    if "per_model" in r:
        parts.append(render_models(r["per_model"]))
    if "gpu" in r:
        parts.append(render_gpu(r["gpu"]))
    parts.append(f"\nwall time {r['wall_s']} s; load avg at end {_f(r['load_average_at_end'][0], 2)}")
    return "\n".join(parts)


def render_study(r: dict[str, Any]) -> str:
    """Sections 1-5 and their targets (the server study)."""
    parts = []
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

    rows: list[list[Any]] = []

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
    return "\n".join(parts)


def _rate(value: float | None) -> str:
    """items/s or req/s with 3 significant digits (face enhancement runs at hundredths per second)."""
    return "-" if value is None else f"{value:.3g}"


def _gflop(flops: float | None) -> str:
    return "-" if not flops else f"{flops / 1e9:.2f}"


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def render_models(m: dict[str, Any]) -> str:
    """The per-model sections (bench/permodel.py) and the summary across models."""
    peak = m["peak"]
    idle = m["idle_server"]
    parts = [
        f"\n6. per model (each in a server of its own); machine peak {peak['peak_gflops']} GFLOP/s "
        f"({peak['op']}, best of {peak['repeats']}, {peak['torch_num_threads']} threads); idle server "
        f"(tiny model only) RSS {idle['rss_ready_mb']['VmRSS']} MB"
    ]
    for name, model in m["models"].items():
        payload = model["payload"]
        size = "x".join(str(v) for v in payload["image_size"])
        options = f", options {model['options']}" if model.get("options") is not None else ""
        parts.append(
            f"\n6.{name}  ({model['predictor']}, {size} JPEG{' + text' if payload['texts'] else ''}{options})"
        )
        parts.append(
            _table(
                ["batch", "items/s", "batch p50 ms", "ms/item"],
                [
                    [b["batch_size"], _rate(b["items_per_s"]), b["batch_p50_ms"], b["per_item_ms"]]
                    for b in model["raw"]["batches"]
                ],
            )
        )
        rows = []
        for mode, data in model["server"].items():
            for row in data["rows"]:
                rows.append(
                    [
                        mode.replace("batching_", "batch "),
                        row["concurrency"],
                        _rate(row["throughput_rps"]),
                        row["p50_ms"],
                        row["p99_ms"],
                        row["errors"],
                        row["ok"],
                    ]
                )
        parts.append(_table(["server", "conc", "req/s", "p50 ms", "p99 ms", "errors", "ok"], rows))
        s = model["summary"]
        parts.append(
            f"   start to ready {_f(s['process_start_to_ready_s'], 2)} s (server: load metric "
            f"{_f(s['load_seconds_metric'], 2)} s = weights {_f(s['weights_s'], 2)} s + warm-up "
            f"{_f(s['warmup_s'], 2)} s); model RSS {_f(s['model_rss_mb'])} MB (server "
            f"{_f(s['server_rss_mb'])} - idle {_f(s['idle_server_rss_mb'])}; in-process load added "
            f"{_f(s['in_process_load_added_rss_mb'])} MB)"
        )
        parts.append(
            f"   FLOPs/item {_gflop(s['flops_per_item'])} G (prepare {_gflop(s['prepare_flops_per_item'])} + "
            f"forward {_gflop(s['forward_flops_per_item'])}); raw {_f(s['raw_efficiency']['gflops'], 2)} "
            f"GFLOP/s = {_percent(s['raw_efficiency']['fraction_of_peak'])} of peak; server "
            f"{_f(s['server_efficiency']['gflops'], 2)} GFLOP/s = "
            f"{_percent(s['server_efficiency']['fraction_of_peak'])} of peak"
        )
    parts.append("\nsummary across models")
    parts.append(
        _table(
            [
                "model", "raw items/s", "server req/s", "sat/raw", ">=0.9", "on/off", "ready s", "weights s",
                "warm-up s", "RSS MB", "GFLOP/item", "raw %peak", "server %peak",
            ],
            [
                [
                    name,
                    _rate(s["raw_items_per_s"]),
                    _rate(s["server_best_rps"]),
                    _f(s["saturation_vs_raw"], 2),
                    "yes" if s["saturation_met"] else "NO",
                    _f(s["batching_on_off_throughput"], 2),
                    _f(s["process_start_to_ready_s"], 1),
                    _f(s["weights_s"], 2),
                    _f(s["warmup_s"], 2),
                    s["model_rss_mb"],
                    _gflop(s["flops_per_item"]),
                    _percent(s["raw_efficiency"]["fraction_of_peak"]),
                    _percent(s["server_efficiency"]["fraction_of_peak"]),
                ]
                for name, s in ((n, model["summary"]) for n, model in m["models"].items())
            ],
        )
    )
    return "\n".join(parts)


def render_gpu(g: dict[str, Any]) -> str:
    """The GPU profile (bench/gpu.py): items/s and fraction of peak by model, precision and batch size."""
    peaks = ", ".join(f"{p} {g['peaks'][p]['peak_gflops']} GFLOP/s" for p in g["precisions"])
    parts = [f"\ngpu profile on {g['device']}: matrix-product peak {peaks}"]
    for name, model in g["models"].items():
        parts.append(f"\n{name}: forward {_gflop(model['forward_flops_per_item'])} GFLOP/item")
        rows = []
        for precision, raw in model["precisions"].items():
            ran = raw.get("effective_precision", precision)
            label = precision if ran == precision else f"{precision} (ran {ran}: not native here)"
            for b in raw["batches"]:
                rows.append([label, b["batch_size"], _rate(b["items_per_s"]), b["batch_p50_ms"], b["gflops"],
                             _percent(b["fraction_of_peak"])])
        parts.append(_table(["precision", "batch", "items/s", "batch p50 ms", "GFLOP/s", "%peak"], rows))
    return "\n".join(parts)
