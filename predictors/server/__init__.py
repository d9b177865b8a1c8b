"""The HTTP/gRPC server: KServe's ModelServer wired with our edge (request ids, limits, errors)."""
