"""One classifier request over every protocol the server speaks, for the integration tests and the
pipeline's smoke check (`python -m ci.smoke_client check`), which runs outside the test environment: this module
needs only httpx, numpy and tritonclient."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np


@dataclass
class ProtocolAnswers:
    #: the v1 predictions (one dict per image with "labels" and "scores")
    v1: list[dict[str, Any]]
    #: protocol name -> (labels per image, scores per image): "v2", "tritonclient-http", "tritonclient-grpc"
    others: dict[str, tuple[list[list[str]], np.ndarray]]
    #: the v2 JSON response's outputs by name (shape and datatype included)
    v2_outputs: dict[str, dict[str, Any]]


def v1_body(images: list[bytes], **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"instances": [{"image": {"b64": base64.b64encode(i).decode()}} for i in images]}
    if parameters:
        body["parameters"] = parameters
    return body


def classify_over_every_protocol(http_url: str, grpc_target: str | None, model: str, images: list[bytes],
                                 top_k: int, timeout: float = 120.0) -> ProtocolAnswers:
    """Top-k of `images` from v1, v2 JSON, v2 binary (tritonclient http) and, with `grpc_target`, gRPC.

    Raises AssertionError naming the protocol when one does not answer 200."""
    import tritonclient.http as httpclient

    http_url = http_url.rstrip("/")
    v1 = httpx.post(f"{http_url}/v1/models/{model}:predict", json=v1_body(images, top_k=top_k), timeout=timeout)
    assert v1.status_code == 200, f"v1 {model}: {v1.status_code} {v1.text[:300]}"
    assert v1.headers.get("x-request-id"), "v1 response lacks X-Request-ID"
    v2 = httpx.post(
        f"{http_url}/v2/models/{model}/infer",
        json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                          "data": [base64.b64encode(i).decode() for i in images]}],
              "parameters": {"top_k": top_k}},
        timeout=timeout,
    )
    assert v2.status_code == 200, f"v2 {model}: {v2.status_code} {v2.text[:300]}"
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    shape = (len(images), top_k)
    others: dict[str, tuple[list[list[str]], np.ndarray]] = {
        "v2": (np.array(outputs["labels"]["data"]).reshape(shape).tolist(),
               np.array(outputs["scores"]["data"]).reshape(shape)),
    }

    http = httpclient.InferenceServerClient(http_url.split("://", 1)[-1], network_timeout=timeout,
                                            connection_timeout=timeout)
    try:
        tensor = httpclient.InferInput("image", [len(images)], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=object), binary_data=True)
        binary = http.infer(model, [tensor], parameters={"top_k": top_k},
                            outputs=[httpclient.InferRequestedOutput("labels", binary_data=True),
                                     httpclient.InferRequestedOutput("scores", binary_data=True)])
    finally:
        http.close()
    others["tritonclient-http"] = (_labels(binary.as_numpy("labels")), binary.as_numpy("scores"))

    if grpc_target:
        import tritonclient.grpc as grpcclient

        grpc = grpcclient.InferenceServerClient(grpc_target)
        try:
            grpc_tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
            grpc_tensor.set_data_from_numpy(np.array(images, dtype=object))
            via_grpc = grpc.infer(model, [grpc_tensor], parameters={"top_k": top_k}, client_timeout=timeout)
        finally:
            grpc.close()
        others["tritonclient-grpc"] = (_labels(via_grpc.as_numpy("labels")), via_grpc.as_numpy("scores"))
    return ProtocolAnswers(v1.json()["predictions"], others, outputs)


def disagreements(answers: ProtocolAnswers, rtol: float = 1e-5) -> list[str]:
    """Where a protocol's labels or scores differ from v1's; empty when they all agree."""
    problems = []
    for i, prediction in enumerate(answers.v1):
        for protocol, (labels, scores) in answers.others.items():
            if list(labels[i]) != prediction["labels"]:
                problems.append(f"image {i}: {protocol} labels {labels[i]} != v1 {prediction['labels']}")
            elif not np.allclose(scores[i], prediction["scores"], rtol=rtol, atol=0):
                problems.append(f"image {i}: {protocol} scores {list(scores[i])} != v1 {prediction['scores']}")
    return problems


def _labels(array: Any) -> list[list[str]]:
    return [[x.decode() for x in row] for row in array]
