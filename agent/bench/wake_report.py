"""The wake benchmark's table: each figure with its target and whether it meets it.

`print_table` prints the document `agent.bench.wake.run` returns, for people; ``--json`` prints
the document itself.
"""

from __future__ import annotations

from typing import Any

from models.wake.metrics import threshold_text


def _verdict(meets: bool) -> str:
    return "meets" if meets else "MISSES"


def print_table(result: dict[str, Any]) -> None:
    """The figures with their targets, for people."""
    model, ww, lat = result["model"], result["wake_words"], result["latency"]
    tr = result["training"]
    source = model["source"]
    if source == "trained":
        source = f"trained, {result['recipe']} recipe, {model['seconds']:.1f} s"
        if model["caches_built"]:
            source += ", building " + ", ".join(model["caches_built"])
    print(f"wake-word benchmark: model {model['phrase']!r} ({source})")
    print(
        f"base network on {result['engine']}, BLAS 1 thread; {result['cpu_count']} CPU cores, "
        f"1-min load average {result['load_average_at_start'][0]:g} at start, "
        f"{result['load_average_at_end'][0]:g} at end"
    )
    row = "  {:<36}{:>24}   {}"
    n = str(ww["wake_words"][1])
    print(
        f"\nten vs one wake word: {ww['audio_seconds']:g} s of speech and noise in "
        f"{result['chunk_ms']} ms chunks, median of {ww['repetitions']} alternated runs"
    )
    print(row.format("1 wake word", f"{ww['cpu_s_per_hour']['1']:.2f} s CPU/h", ""))
    print(row.format(f"{n} wake words", f"{ww['cpu_s_per_hour'][n]:.2f} s CPU/h", ""))
    print(
        row.format(
            f"{n} / 1", f"{ww['ratio']:.3f}x",
            f"target <= {ww['target_ratio']}x: {_verdict(ww['meets_target'])}",
        )
    )  # fmt: skip
    rtf = ww["real_time_factor"]
    print(row.format("real-time factor (1 / 10)", f"{rtf['1']:.4f} / {rtf[n]:.4f}", ""))
    print(
        f"\ndetection latency: {lat['placements']} placed phrases ({lat['audio_seconds']:g} s), "
        f"threshold {lat['threshold']:g}"
    )
    print(
        row.format(
            "detected", f"{lat['detected']}/{lat['placements']} ({lat['hit_rate']:.0%})",
            f"{lat['false_alarms']} false alarms",
        )
    )  # fmt: skip
    if "threshold_1_per_hour" in lat:
        print(
            row.format(
                f"detected at 1 false alarm/h ({threshold_text(lat['threshold_1_per_hour'])})",
                f"{lat['hit_rate_at_1_per_hour']:.0%}", "",
            )
        )  # fmt: skip
    if lat["detected"]:
        print(
            row.format(
                "latency median / p90",
                f"{lat['latency_median_ms']:.0f} / {lat['latency_p90_ms']:.0f} ms",
                f"target median < {lat['target_latency_median_ms']:g} ms: "
                f"{_verdict(lat['meets_target'])}",
            )
        )
        print(
            row.format(
                f"  with the {result['chunk_ms']} ms block wait",
                f"{lat['latency_with_block_wait_median_ms']:.0f} / "
                f"{lat['latency_with_block_wait_p90_ms']:.0f} ms",
                "",
            )
        )
    print(row.format("compute per hop (mean)", f"{lat['compute_ms_per_hop']:.2f} ms", ""))
    if tr is None:
        print("\ntraining: skipped (--skip-training)")
        return
    print(f"\ntraining a wake word from text: {tr['phrase']!r}, {result['recipe']} recipe")
    print(
        row.format(
            "time (wall)", f"{tr['seconds']:.1f} s",
            f"target < {tr['target_s']:g} s: {_verdict(tr['meets_target'])}",
        )
    )  # fmt: skip
    caches = "warm" if tr["caches_warm"] else "cold: built " + ", ".join(tr["caches_built"])
    print(row.format("negative-stream caches", caches.split(":")[0], caches.partition(": ")[2]))
    print(row.format("renditions synthesized", str(tr["renditions_synthesized"]), ""))
    stages = ", ".join(f"{k} {v:g} s" for k, v in tr["stages_s"].items())
    print(f"  stages: {stages}; {tr['epochs_last_fit']} epochs in the last fit")
