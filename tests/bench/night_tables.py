"""Markdown tables from a `duskwatch bench night` JSON summary (its last stdout line), for the docs.

    duskwatch bench night ... | tail -1 > night.json
    python tests/bench/night_tables.py night.json

One table per detector and set: rows are the methods, columns AP50 / AP50-95 of the whole set
and of each brightness bin (photos per bin in the header), and how many photos were enhanced.
"""

from __future__ import annotations

import json
import sys


def cell(r: dict) -> str:
    if not r["boxes"] or r["ap50"] is None:
        return "-"
    return f"{r['ap50']:.3f} / {r['ap50_95']:.3f}"


def table(det: str, name: str, entry: dict, methods: list[str], bins: list[str]) -> str:
    raw = entry.get("raw") or next(v for k, v in entry.items() if isinstance(v, dict) and "all" in v)
    head = " | ".join(f"{b} ({raw[b]['images']})" for b in bins)
    lines = [f"**{det}, {name}** ({entry['images']} photos), AP50 / AP50-95:", "",
             f"| method | {head} | enhanced |", "|---" * (len(bins) + 2) + "|"]
    for m in methods:
        if m in entry:
            cells = " | ".join(cell(entry[m][b]) for b in bins)
            lines.append(f"| {m} | {cells} | {entry['enhanced'].get(m, 0)} |")
    return "\n".join(lines)


def split_table(det: str, name: str, split: dict) -> str:
    """Dark photos split by the gate's statistics (luma, highlight fraction): AP50 per method."""
    methods = list(split)
    groups = list(split[methods[0]])
    lines = [f"**{det}, {name}**, dark photos by the gate's statistics, AP50:", "",
             "| photos | count | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for g in groups:
        n = split[methods[0]][g]["images"]
        vals = " | ".join("-" if split[m][g]["ap50"] is None else f"{split[m][g]['ap50']:.3f}" for m in methods)
        lines.append(f"| {g} | {n} | {vals} |")
    return "\n".join(lines)


def main(path: str) -> int:
    s = json.loads(open(path).read().strip().splitlines()[-1])
    for det, sets in s["results"].items():
        for name, entry in sets.items():
            print(table(det, name, entry, s["methods"], s["bins"]))
            print()
            if entry.get("by_gate_stats"):
                print(split_table(det, name, entry["by_gate_stats"]))
                print()
    if "tuned" in s:
        print("tuned:", json.dumps(s["tuned"]))
    print("gate checks:", json.dumps(s.get("gate_checks", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
