"""Metrics, request context and (later) tracing."""
