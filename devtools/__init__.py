"""Development tooling shared by the tests, the benchmarks and the CI scripts (not part of the shipped
package): generated documentation (`docs`), the chart's generated schema and values table (`chart`)."""
