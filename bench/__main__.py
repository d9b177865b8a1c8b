import sys

if sys.argv[1:2] == ["soak"]:
    from bench.soak import main as soak

    sys.exit(soak(sys.argv[2:]))
if sys.argv[1:2] == ["latency"]:
    from bench.latency import main as latency

    sys.exit(latency(sys.argv[2:]))
if sys.argv[1:2] == ["allocator"]:
    from bench.allocator import main as allocator

    sys.exit(allocator(sys.argv[2:]))
if sys.argv[1:2] == ["series"]:
    from bench.series import main as series

    sys.exit(series(sys.argv[2:]))
if sys.argv[1:2] == ["canary"]:
    from bench.canary import main as canary

    sys.exit(canary(sys.argv[2:]))
if sys.argv[1:2] == ["jobs"]:
    from bench.jobs import main as jobs

    sys.exit(jobs(sys.argv[2:]))

from bench.run import main  # noqa: E402 - the soak run needs none of the benchmark's imports

sys.exit(main())
