from __future__ import annotations

import pytest

from predictors.telemetry import tracing


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "x"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
])
def test_only_otel_variables_turn_tracing_on(env: dict[str, str], expected: bool) -> None:
    assert tracing.tracing_requested(env) is expected


def test_no_otel_variables_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "preconfigured", lambda: False)
    installed = []
    monkeypatch.setattr(tracing.trace, "set_tracer_provider", installed.append)
    assert tracing.configure_tracing({}) is None
    assert installed == []


@pytest.mark.parametrize(("protocol", "module"), [
    (None, "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
    ("http/protobuf", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
    ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
])
def test_provider_from_env(monkeypatch: pytest.MonkeyPatch, protocol: str | None, module: str) -> None:
    monkeypatch.setattr(tracing, "preconfigured", lambda: False)
    installed = []
    monkeypatch.setattr(tracing.trace, "set_tracer_provider", installed.append)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    if protocol:
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    provider = tracing.configure_tracing(env)
    try:
        assert installed == [provider]
        assert provider.resource.attributes["service.name"] == "vision-predictors"
        assert provider.resource.attributes["deployment.environment"] == "test"
        exporters = [p.span_exporter for p in provider._active_span_processor._span_processors]
        assert [type(e).__module__ for e in exporters] == [module]
    finally:
        provider.shutdown()


def test_service_name_from_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "preconfigured", lambda: False)
    monkeypatch.setattr(tracing.trace, "set_tracer_provider", lambda provider: None)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-predictor")
    provider = tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert provider.resource.attributes["service.name"] == "my-predictor"
    finally:
        provider.shutdown()


def test_auto_instrumentation_provider_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = object()
    monkeypatch.setattr(tracing, "preconfigured", lambda: True)
    monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: sentinel)
    monkeypatch.setattr(tracing.trace, "set_tracer_provider",
                        lambda provider: pytest.fail("must not replace the auto-instrumentation provider"))
    assert tracing.configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is sentinel


def test_unsupported_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "preconfigured", lambda: False)
    with pytest.raises(ValueError, match="http/json"):
        tracing.configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                   "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
