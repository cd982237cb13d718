"""`make bench`: run every benchmark in bench/ and print one table.

Each module ``bench/bench_<area>.py`` exposes ``run(quick: bool = False)`` returning rows
``{"workload", "size", "figure", "target", "met"}``. ``--quick`` runs small sizes only;
``--only lifecycle,risk`` picks modules. The table is also written to
``var/bench/latest.md`` for the README.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

import django


def _modules(only: set[str] | None) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    return [n for n in names if only is None or n.removeprefix("bench_") in only]


def _machine() -> str:
    cpus = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0.0
    return f"{platform.machine()}, {cpus} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def render(rows: list[dict]) -> str:
    header = ("workload", "size", "figure", "target", "met")
    table = [header] + [tuple(str(r.get(k, "")) if k != "met" else
                              ("yes" if r.get("met") else "NO") for k in header) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated areas (lifecycle, risk, …)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    django.setup()
    only = set(args.only.split(",")) if args.only else None
    rows: list[dict] = []
    failed = False
    for name in _modules(only):
        print(f"running {name} …", flush=True)
        started = time.perf_counter()
        try:
            rows.extend(importlib.import_module(f"bench.{name}").run(quick=args.quick))
        except Exception:
            failed = True
            traceback.print_exc()
            rows.append({"workload": name, "size": "-", "figure": "FAILED", "target": "-",
                         "met": False})
        print(f"  {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    table = render(rows)
    print(f"\nMachine: {_machine()}\n\n{table}")
    out = Path("var/bench/latest.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"Machine: {_machine()}\n\n{table}\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
