"""`make demo` wall time by phase: runs the demo runner ``--runs`` times (default 1; each run takes about two
minutes) and prints the median of each phase and its share of the total, plus the verification verdicts."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    summaries = []
    for i in range(args.runs):
        proc = subprocess.run([sys.executable, "-m", "demo"], cwd=REPO, capture_output=True, text=True, timeout=1800)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        summaries.append(summary)
        print(f"run {i + 1}: verdict {summary.get('verdict')}, phases {summary['phases_s']}", flush=True)
    phases = summaries[0]["phases_s"].keys()
    medians = {p: statistics.median(s["phases_s"][p] for s in summaries) for p in phases}
    total = sum(medians.values())
    for phase, seconds in medians.items():
        print(f"{phase:48s} median {seconds:6.1f} s  ({seconds / total:5.1%} of {total:.1f} s)")
    return 0 if all(s.get("verdict") == "passed" for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
