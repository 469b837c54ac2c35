"""Compare the per-run records of two experiment JSON files (e.g. a committed result and a re-run).

    python scripts/compare_runs.py OLD.json NEW.json --match noise method seed --values accuracy auroc \
        [--out table.md]

Records are the `runs` (or `records`) list of each file; a record of NEW is matched with the record of OLD
that has the same values of every `--match` field. A value may name a field inside a dict with a dot
(`loss.reference mix`). Prints (and writes to --out) a Markdown table with, per
matched record and value, old, new and new - old, and the largest absolute difference per value.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def records(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text())
    for name in ("runs", "records"):
        if isinstance(data, dict) and name in data:
            return data[name]
    if isinstance(data, list):
        return data
    raise SystemExit(f"{path}: no 'runs' or 'records' list of per-run records")


def value(record: dict, name: str):
    """record[name], or record[a][b] for name 'a.b'."""
    if name in record:
        return record[name]
    head, _, rest = name.partition(".")
    inner = record.get(head)
    return value(inner, rest) if isinstance(inner, dict) and rest else None


def compare(old: list[dict], new: list[dict], match: list[str], values: list[str]) -> tuple[list[list], dict]:
    index = {tuple(r.get(k) for k in match): r for r in old}
    rows, worst = [], {v: 0.0 for v in values}
    for r in new:
        o = index.get(tuple(r.get(k) for k in match))
        if o is None:
            continue
        row = [r.get(k) for k in match]
        for v in values:
            a, b = value(o, v), value(r, v)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                row += [f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"]
                worst[v] = max(worst[v], abs(b - a))
            else:
                row += ["-", "-", "-"]
        rows.append(row)
    return rows, worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--match", nargs="+", required=True, help="fields that identify a run")
    parser.add_argument("--values", nargs="+", required=True, help="numeric fields to compare")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    rows, worst = compare(records(args.old), records(args.new), args.match, args.values)
    if not rows:
        raise SystemExit("no record of NEW matches a record of OLD on " + ", ".join(args.match))
    header = [*args.match] + [f"{v} {w}" for v in args.values for w in ("old", "new", "new - old")]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    text = (f"Command: `{shlex.join(['python', 'scripts/compare_runs.py', *(argv or sys.argv[1:])])}`\n\n"
            + "\n".join(lines) + "\n\nLargest |new - old|: "
            + ", ".join(f"{v} {d:.4f}" for v, d in worst.items()) + "\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
