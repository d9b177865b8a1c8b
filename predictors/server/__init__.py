"""The HTTP/gRPC server: KServe's ModelServer wired with our edge.

- `app.py`: `PredictorServer` (start-up, model loading, draining on SIGTERM);
- `kserve_model.py`: the `kserve.Model` per served model, its hooks codec decode -> `ModelRuntime.infer`
  -> codec encode;
- `edge.py`: the one request scope both transports run (request id, context, record, span, telemetry);
- `middleware.py`: the REST transport's edge (body limit, client hang-ups, last-resort 500);
- `grpc_interceptor.py`: the gRPC transport's edge (message limit, cancellation, status mapping);
- `errors.py`: every error mapped to HTTP and to gRPC, here only;
- `dataplane.py`: KServe's data plane with our decoding and readiness rules;
- `kserve_compat.py`: every reliance on KServe/FastAPI/prometheus-client private internals.
"""
