"""Development tooling shared by the tests, the benchmarks and the CI scripts (not part of the shipped
package): child processes on free loopback ports (`procs`), a real Redis (`redis_server`), sample pictures
(`images`), one request over every protocol (`protocols`), generated documentation (`docs`) and the chart's generated
schema and values table (`chart`).

Nothing here is imported by `predictors`; each module imports only what it needs, so that the smoke check's
minimal venv can import `devtools.protocols` alone."""
