"""How scripts/bench_load.py reports its rounds: the table it prints and the ratios it keeps. Stdlib only."""

from __future__ import annotations

import os
import statistics

from load_calls import ModeResult

MODES = ("app", "core", "floor")  # the order of the table's rows


def median_ratios(rounds: list[dict[str, float | None]]) -> dict[str, float | None] | None:
    """Each ratio's median over the rounds that have it (the one round's ratios when there is one)."""
    if not rounds:
        return None
    merged: dict[str, float | None] = {}
    for key in rounds[0]:
        values = [value for ratios in rounds if (value := ratios[key]) is not None]
        merged[key] = round(statistics.median(values), 2) if values else None
    return merged


def app_to_floor(results: list[ModeResult]) -> list[float]:
    """Per round with both, the app's CPU per transfer over the floor's: what the engine costs above the least
    a Python app on the same socket stack spends. Both are Python on the same machine at the same moment, so
    this moves less from run to run than a ratio to Asterisk's own transfer does."""
    ratios = []
    for number in sorted({r.round for r in results}):
        cpu = {r.mode: r.summary()["app_cpu_ms_per_transfer"] for r in results if r.round == number}
        app, floor = cpu.get("app"), cpu.get("floor")
        if app is not None and floor:
            ratios.append(round(app / floor, 2))
    return ratios


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def table(results: list[ModeResult], payload: dict[str, object]) -> str:
    first = results[0] if results else None
    lines = [
        f"seed flow under load: {payload['rate']:g} calls/s, {payload['calls']} calls per mode, at most "
        f"{payload['limit']} at once; Alice talks {payload['talk_ms']} ms; CPU in ms per transfer (REFER sent)",
        "",
        f"{'mode':<9} {'placed':>6} {'completed':>9}  {'REFER->INVITE p50 / p90 / max (ms)':>35}  "
        f"{'app CPU':>7}  {'Asterisk CPU':>12}  {'left: channels, bridges':>23}",
    ]
    repeat = int(str(payload["repeat"]))
    for r in sorted(results, key=lambda r: (MODES.index(r.mode), r.round)):
        s = r.summary()
        latency = f"{fmt(s['latency_p50_ms'])} / {fmt(s['latency_p90_ms'])} / {fmt(s['latency_max_ms'])}"
        left = "-" if r.left_channels is None else f"{r.left_channels}, {r.left_bridges}"
        lines.append(
            f"{r.label(repeat):<9} {r.placed:>6} {fmt(s['completed_pct'], 1, ' %'):>9}  {latency:>35}  "
            f"{fmt(s['app_cpu_ms_per_transfer']):>7}  {fmt(s['asterisk_cpu_ms_per_transfer']):>12}  {left:>23}"
        )
    for name in ("app", "floor"):
        ratios = payload[f"ratios_{name}_to_core"]
        if isinstance(ratios, dict):
            latency = " / ".join(fmt(ratios[k], 2) for k in ("latency_p50", "latency_p90", "latency_max"))
            lines.append(
                f"{name + '/core':<9} {'':>6} {fmt(ratios['completed'], 2):>9}  {latency:>35}  "
                f"{fmt(ratios['app_cpu_to_core_asterisk_cpu'], 2):>7}  {fmt(ratios['asterisk_cpu'], 2):>12}"
            )
    by_round = payload.get("app_cpu_to_floor_by_round")
    if isinstance(by_round, list) and by_round:
        rounds = ", ".join(f"{value:.2f}" for value in by_round)
        lines.append(
            f"app/floor CPU per transfer: {statistics.median(by_round):.2f}x (the median of: {rounds}): what the "
            "engine costs above the floor"
        )
    if payload["ratios_app_to_core"] or payload["ratios_floor_to_core"]:
        lines.append("  (app CPU ratio: the app's CPU per transfer / Asterisk's per transfer in the core run)")
        if repeat > 1:
            lines.append(f"  (each ratio: the median of the {repeat} rounds' own, each round against its core round)")
    for r in results:
        lines += [f"{r.label(repeat)}: {line}" for line in r.findings()]
    if first is not None:
        lines.append(f"(CPU clock tick {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms; total {payload['elapsed_s']} s)")
    return "\n".join(lines)
