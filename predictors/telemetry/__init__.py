"""Telemetry: Prometheus metrics, the request record and context, the edge's access log and OpenTelemetry tracing."""
