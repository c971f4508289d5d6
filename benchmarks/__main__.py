"""Run every benchmark module: ``python -m benchmarks [name ...]``.

Discovers ``benchmarks/*.py`` modules that define ``main()`` and runs them one after another with no
arguments (each module's defaults); names restrict the run to those modules.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:])
    status = 0
    for name in modules():
        if wanted and name not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        entry = getattr(module, "main", None)
        if entry is None:
            continue
        print(f"=== benchmarks.{name} ===", flush=True)
        try:
            rc = entry([])
        except SystemExit as exc:  # argparse-style exits
            rc = exc.code if isinstance(exc.code, int) else 1
        status = status or int(rc or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
