"""Run the benchmarks named on the command line (default: all), each a module of this package with main()."""

from __future__ import annotations

import importlib
import sys

SUITES = ("engine", "api", "compare", "stack", "startup")
DEFAULT = ("engine", "api", "compare")  # compare runs stack's rows too


def run(names: list[str]) -> int:
    options = next((i for i, name in enumerate(names) if name.startswith("-")), len(names))
    suites = names[:options]  # what follows the first option is the suite's own (compare's flags)
    for name in suites or DEFAULT:
        if name not in SUITES:
            print(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}", file=sys.stderr)
            return 2
        module = importlib.import_module(f"bench.{name}")
        print(f"\n== bench {name} ==", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
