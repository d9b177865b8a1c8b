"""``python -m bench [SUITE] [ARGS]``: one suite per subcommand; without one, the server study (``run``).

Each suite module keeps its own ``main(argv)`` and its own parser (``python -m bench SUITE --help``); this
parser only names the suites and hands the rest of the command line to the chosen one. A suite's module
is imported only when it runs (the soak run needs none of the study's imports).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, what it measures); `run` is the default
SUITES: dict[str, tuple[str, str]] = {
    "run": ("bench.run", "the server study: in-process ceiling, our server, a FastAPI baseline, overhead, "
                         "overload, and per model its ceiling, saturation, start-up, memory and FLOPs (default)"),
    "latency": ("bench.latency", "latency targets against static batching knobs, on a real server"),
    "jobs": ("bench.jobs", "asynchronous jobs against synchronous inference, on a real server and Redis"),
    "series": ("bench.series", "a series of `jobs` runs of one commit, judged together against the targets"),
    "allocator": ("bench.allocator", "the server on glibc malloc against the server on jemalloc"),
    "soak": ("bench.soak", "minutes of mixed valid and invalid traffic on every model: does the server leak?"),
    "canary": ("bench.canary", "how fast and how right `predictors canary-analysis` decides"),
    "stages": ("bench.stages", "where one item's time goes, stage by stage (face enhancement, visual entailment)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="The benchmark suites (docs/performance.md). Without a SUITE: `run`.",
        epilog="`python -m bench SUITE --help` lists a suite's own flags.",
    )
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", title="suites")
    for name, (_, summary) in SUITES.items():
        # The suite parses its own flags: this subparser takes none (not even --help) and passes them on.
        suites.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*SUITES, "-h", "--help"):
        argv = ["run", *argv]  # `python -m bench --quick` is the server study, as it always was
    args = build_parser().parse_args(argv[:1])
    module = importlib.import_module(SUITES[args.suite][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
