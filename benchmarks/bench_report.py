"""What every benchmark does with its figures: a table for people, a JSON file for the record (written
to a temp file and renamed, so a reader never sees half of it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(rows: Sequence[tuple[str, str, str]], value_head: str = "median", first_head: str = "measure") -> None:
    width = max(len(first_head), *(len(r[0]) for r in rows))
    value_width = max(len(value_head), *(len(r[1]) for r in rows))
    print(f"{first_head:<{width}}  {value_head:>{value_width}}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {target}".rstrip())


def save_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(results, indent=2) + "\n")
    temp.replace(path)
    return path
