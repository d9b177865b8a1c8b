"""`visual-entailment` through the real server process: v1 and v2 REST (httpx), tritonclient HTTP (binary)
and gRPC, cross-request batching, metadata, and 400 INVALID_INPUT for bad text.

Runs on a generated tiny OFA directory; the OFA extra packages are required (the server fails to load
the model without them, and these tests then fail).
"""

from __future__ import annotations

import base64
import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from predictors.models.visual_entailment import demo
from tests.conftest import encode, sample_image
from tests.support.server import run_server

MODEL = "visual-entailment"
CLASSES = ["entailment", "contradiction", "neutral"]
# the predictor's limits (predictors.models.visual_entailment.predictor, not importable here: it pulls in KServe,
# whose gRPC stubs clash with tritonclient's)
HYPOTHESIS_MAX_BYTES = 1024
PREMISE_MAX_BYTES = 2048

IMAGES = [encode(sample_image(seed, size)) for seed, size in
          enumerate([(320, 240), (200, 260), (256, 256), (500, 300)])]
HYPOTHESES = ["a man is playing with a ball", "two dogs", "the woman is sitting on a red car in the street",
              "cat"]
PREMISES = ["a dog runs on the grass", "a picture", "people are sitting in a car", "an old man with a hat"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("visual-entailment-server")
    model_dir = demo.write(root / "visual-entailment", seed=1, patch_image_size=256)
    cache = root / "modelscope-cache"
    cache.mkdir()
    with run_server(["--model-dir", f"{MODEL}={model_dir}", "--device", "cpu"], root / "server.log",
                    env={"MODELSCOPE_CACHE": str(cache)}, wait_for=[MODEL], timeout=240) as process:
        yield process


def v1_infer(server, instances, timeout: float = 60.0) -> httpx.Response:
    body = {"instances": instances}
    return httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json=body, timeout=timeout)


def instance(image: bytes, hypothesis: str, premise: str | None = None) -> dict:
    value = {"image": {"b64": base64.b64encode(image).decode()}, "hypothesis": hypothesis}
    if premise is not None:
        value["premise"] = premise
    return value


def v1_scores(prediction: dict) -> list[float]:
    scores = prediction["scores"]
    assert isinstance(scores, dict) and list(scores) == CLASSES  # v1 names the classes
    return [scores[name] for name in CLASSES]


def check_prediction(label: str, scores: list[float]) -> None:
    assert label in CLASSES
    assert len(scores) == 3
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert scores[CLASSES.index(label)] == max(scores)


@pytest.fixture(scope="module")
def reference(server):
    """v1 answers for items with and without premise, one request each (no cross-item batching)."""
    answers = {}
    for image, hypothesis, premise in zip(IMAGES, HYPOTHESES, PREMISES, strict=True):
        for p in (None, premise):
            response = v1_infer(server, [instance(image, hypothesis, p)])
            assert response.status_code == 200, response.text
            (prediction,) = response.json()["predictions"]
            check_prediction(prediction["label"], v1_scores(prediction))
            answers[(image, hypothesis, p)] = (prediction["label"], v1_scores(prediction))
    return answers


def test_v1_mixed_premise_request_matches_single_requests(server, reference) -> None:
    keys = list(reference)
    response = v1_infer(server, [instance(*key) for key in keys])
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(keys)
    for key, prediction in zip(keys, predictions, strict=True):
        label, scores = reference[key]
        assert prediction["label"] == label
        assert v1_scores(prediction) == pytest.approx(scores, abs=1e-5)
    # the premise really changes the model input
    assert any(reference[(i, h, None)][1] != pytest.approx(reference[(i, h, p)][1], abs=1e-6)
               for i, h, p in zip(IMAGES, HYPOTHESES, PREMISES, strict=True))


def test_concurrent_requests_are_batched_and_answer_the_same(server, reference) -> None:
    keys = list(reference)
    with concurrent.futures.ThreadPoolExecutor(len(keys)) as pool:
        responses = list(pool.map(lambda key: v1_infer(server, [instance(*key)]), keys))
    for key, response in zip(keys, responses, strict=True):
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        assert prediction["label"] == reference[key][0]
        assert v1_scores(prediction) == pytest.approx(reference[key][1], abs=1e-5)


def test_v2_json(server, reference) -> None:
    body = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [4],
             "data": [base64.b64encode(image).decode() for image in IMAGES]},
            {"name": "hypothesis", "datatype": "BYTES", "shape": [4], "data": HYPOTHESES},
            {"name": "premise", "datatype": "BYTES", "shape": [4], "data": PREMISES},
        ]
    }
    response = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [4]
    assert outputs["scores"]["datatype"] == "FP32" and outputs["scores"]["shape"] == [4, 3]
    scores = np.asarray(outputs["scores"]["data"], dtype=np.float32).reshape(4, 3)
    for index, key in enumerate(zip(IMAGES, HYPOTHESES, PREMISES, strict=True)):
        assert outputs["label"]["data"][index] == reference[key][0]
        assert scores[index].tolist() == pytest.approx(reference[key][1], abs=1e-5)


def triton_inputs(module, images, hypotheses, premises=None, binary: bool = True) -> list:
    def tensor(name, values):
        value = module.InferInput(name, [len(values)], "BYTES")
        array = np.array(values, dtype=np.object_)
        if module is httpclient:
            value.set_data_from_numpy(array, binary_data=binary)
        else:
            value.set_data_from_numpy(array)
        return value

    inputs = [tensor("image", images), tensor("hypothesis", [h.encode() if isinstance(h, str) else h
                                                               for h in hypotheses])]
    if premises is not None:
        inputs.append(tensor("premise", [p.encode() for p in premises]))
    return inputs


def check_triton_result(result, keys, reference) -> None:
    labels = [value.decode() for value in result.as_numpy("label")]
    scores = result.as_numpy("scores")
    assert scores.dtype == np.float32 and scores.shape == (len(keys), 3)
    for key, label, row in zip(keys, labels, scores, strict=True):
        assert label == reference[key][0]
        assert row.tolist() == pytest.approx(reference[key][1], abs=1e-5)


def test_tritonclient_http_binary(server, reference) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    outputs = [httpclient.InferRequestedOutput("label", binary_data=True),
               httpclient.InferRequestedOutput("scores", binary_data=True)]
    result = client.infer(MODEL, triton_inputs(httpclient, IMAGES, HYPOTHESES, PREMISES), outputs=outputs)
    check_triton_result(result, list(zip(IMAGES, HYPOTHESES, PREMISES, strict=True)), reference)
    result = client.infer(MODEL, triton_inputs(httpclient, IMAGES, HYPOTHESES), outputs=outputs)
    check_triton_result(result, [(i, h, None) for i, h in zip(IMAGES, HYPOTHESES, strict=True)], reference)


def test_tritonclient_grpc(server, reference) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    result = client.infer(MODEL, triton_inputs(grpcclient, IMAGES, HYPOTHESES, PREMISES))
    check_triton_result(result, list(zip(IMAGES, HYPOTHESES, PREMISES, strict=True)), reference)
    result = client.infer(MODEL, triton_inputs(grpcclient, IMAGES[:1], HYPOTHESES[:1]))
    check_triton_result(result, [(IMAGES[0], HYPOTHESES[0], None)], reference)


def test_metadata_states_the_contract(server) -> None:
    response = httpx.get(f"{server.url}/v2/models/{MODEL}", timeout=10)
    assert response.status_code == 200
    metadata = response.json()
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("image", "BYTES", [-1]), ("hypothesis", "BYTES", [-1]), ("premise", "BYTES", [-1])]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("label", "BYTES", [-1]), ("scores", "FP32", [-1, 3])]
    client = grpcclient.InferenceServerClient(server.grpc_target)
    grpc_metadata = client.get_model_metadata(MODEL, as_json=True)
    assert [o["name"] for o in grpc_metadata["outputs"]] == ["label", "scores"]


def assert_invalid_input(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "INVALID_INPUT"
    assert field in body["error"]


@pytest.mark.parametrize(
    "text", ["", "   ", "x" * (HYPOTHESIS_MAX_BYTES + 1), "é" * (HYPOTHESIS_MAX_BYTES // 2 + 1)]
)
def test_v1_bad_hypothesis_is_invalid_input(server, text: str) -> None:
    assert_invalid_input(v1_infer(server, [instance(IMAGES[0], text)]), "hypothesis")


def test_v1_bad_premise_and_missing_hypothesis(server) -> None:
    assert_invalid_input(v1_infer(server, [instance(IMAGES[0], "a dog", "")]), "premise")
    assert_invalid_input(v1_infer(server, [instance(IMAGES[0], "a dog", "p" * (PREMISE_MAX_BYTES + 1))]),
                         "premise")
    missing = {"image": {"b64": base64.b64encode(IMAGES[0]).decode()}}
    assert_invalid_input(v1_infer(server, [missing]), "hypothesis")
    # a text at the limit is accepted
    assert v1_infer(server, [instance(IMAGES[0], "a " * (HYPOTHESIS_MAX_BYTES // 2))]).status_code == 200


def test_v2_json_too_long_hypothesis(server) -> None:
    body = {"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(IMAGES[0]).decode()]},
        {"name": "hypothesis", "datatype": "BYTES", "shape": [1], "data": ["y" * (HYPOTHESIS_MAX_BYTES + 1)]},
    ]}
    assert_invalid_input(httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=30),
                         "hypothesis")


def test_invalid_utf8_hypothesis_over_binary_http(server) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, triton_inputs(httpclient, IMAGES[:1], [b"\xff\xfe not utf-8"]))
    assert caught.value.status() == "400"
    assert "INVALID_INPUT" in str(caught.value) or "not valid UTF-8" in str(caught.value)
    assert "hypothesis" in str(caught.value)


def test_invalid_utf8_and_empty_hypothesis_over_grpc(server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    for bad, problem in ((b"\xc3\x28", "UTF-8"), (b"", "empty")):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, triton_inputs(grpcclient, IMAGES[:1], [bad]))
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "INVALID_INPUT" in caught.value.message()
        assert "hypothesis" in caught.value.message() and problem in caught.value.message()


def test_the_server_said_it_serves_demo_weights(server) -> None:
    assert "DEMO weights" in server.log()


def test_model_dir_layout_is_upstreams(server, tmp_path: Path) -> None:
    # the served directory is the published layout; nothing of ours is needed besides predictor.json
    model_dir = Path(server.process.args[server.process.args.index("--model-dir") + 1].split("=", 1)[1])
    assert {p.name for p in model_dir.iterdir()} >= {
        "configuration.json", "config.json", "pytorch_model.bin", "vocab.json", "merges.txt",
        "answer2label.json"}
