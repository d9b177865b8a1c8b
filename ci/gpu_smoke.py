"""The checks of ci/gpu-smoke.sh (docs/gpu.md), run as ``python -m ci.gpu_smoke SUBCOMMAND`` from the repository
root; each subcommand exits non-zero with a message on failure.

  probe     a usable CUDA device that this torch build has kernels for (exit 2 when there is none)
  runner    the device runner on the real GPU: its thread is bound to the device (set_device), a batch
            whose memory grows with its size hits real CUDA out-of-memory errors and is split, an item
            larger than the GPU is recomputed on the CPU, and afterwards the GPU serves again with no
            memory left behind
  requests  one request per protocol (v1, v2 REST, gRPC) to every model of the running server
  oom       the running server under memory pressure: this process holds nearly all free GPU memory,
            a large face-enhancement request still gets its answer (split/CPU fallback counted in
            /metrics); after the memory is released the same request runs on the GPU again

Imports torch, httpx, numpy, pillow and tritonclient; never the server's own modules besides
predictors.device (KServe's protobufs clash with tritonclient's).
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import threading
import time
from collections.abc import Sequence

import httpx
import numpy as np

from ci.smoke_client import SmokeFailure, check, expect, log

CLASSIFIERS = ["general-recognition", "image-classification"]
MiB = 1024 * 1024


def probe(device_spec: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SmokeFailure(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable CUDA GPU "
                           "(no device, no driver, or a driver older than this build needs)")
    device = torch.device(device_spec)
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise SmokeFailure(f"{device_spec}: only {torch.cuda.device_count()} GPU(s)")
    major, minor = torch.cuda.get_device_capability(index)
    arch = f"sm_{major}{minor}"
    if arch not in torch.cuda.get_arch_list():
        raise SmokeFailure(f"{torch.cuda.get_device_name(index)} is {arch}; this torch build has kernels for "
                           f"{torch.cuda.get_arch_list()} only (see docs/gpu.md for the CUDA 12 image)")
    free, total = torch.cuda.mem_get_info(index)
    log(f"{device_spec}: {torch.cuda.get_device_name(index)} ({arch}), {free // MiB} of {total // MiB} MiB free, "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}")


def runner(device_spec: str) -> None:
    import torch

    from predictors.device import DeviceRunner, wait_for_fallbacks

    device = torch.device(device_spec)
    free, _ = torch.cuda.mem_get_info(device)
    per_item = free // 3  # a batch of 3 or more cannot fit, 2 can
    huge = 4 * free  # never fits: recomputed on the CPU
    current: list[int] = []
    actions: list[str] = []

    def forward(batch: Sequence[int], target: torch.device) -> list[int]:
        if target.type == "cuda":
            current.append(torch.cuda.current_device())
            buffer = torch.empty(sum(batch), dtype=torch.uint8, device=target)  # real allocations
            buffer.fill_(1)
            torch.cuda.synchronize(target)
        return [len(batch)] * len(batch)

    device_runner = DeviceRunner(device, on_oom=actions.append)
    try:
        baseline = torch.cuda.memory_allocated(device)
        results = wait_for_fallbacks(device_runner.executor.submit(device_runner.run, forward, [per_item] * 8)
                                     .result(timeout=120))
        expect(results == [2] * 8, f"a batch of 8 that fits by 2 came back as {results}")
        expect(actions.count("split") == 3 and "cpu_fallback" not in actions,
               f"expected 3 splits (8 -> 4 -> 2), got {actions}")
        actions.clear()
        results = device_runner.call(forward, [huge])
        expect(results == [1] and actions == ["cpu_fallback"], f"huge item: {results}, {actions}")
        expect(device_runner.call(forward, [per_item]) == [1], "the GPU did not serve after the fallback")
        expect(set(current) == {device.index or 0},
               f"the device thread ran on GPU(s) {sorted(set(current))}, not {device}")
        left = torch.cuda.memory_allocated(device) - baseline
        expect(left == 0, f"{left} bytes still allocated after the out-of-memory errors")
    finally:
        device_runner.shutdown()
    log(f"runner on {device}: real CUDA OOM split 8 -> 4 -> 2, a {huge // MiB} MiB item ran on the CPU, "
        "the GPU served again, nothing leaked")


def picture(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def face_v1(url: str, image: bytes, timeout: float) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/face-enhancement:predict", timeout=timeout, json={
        "instances": [{"image": {"b64": b64(image)}}], "parameters": {"require_face": False, "upscale": True}})


def requests(url: str, grpc_target: str, models: list[str], timeout: float) -> None:
    import tritonclient.grpc as grpcclient

    check(url, grpc_target, [m for m in models if m in CLASSIFIERS], timeout)
    image = picture(96, 64)
    texts = {"visual-entailment": {"hypothesis": "a picture of noise"}, "face-enhancement": {}}
    parameters = {"face-enhancement": {"require_face": False}, "visual-entailment": {}}
    for model in [m for m in models if m not in CLASSIFIERS]:
        extra = texts[model]
        v1 = httpx.post(f"{url}/v1/models/{model}:predict", timeout=timeout, json={
            "instances": [{"image": {"b64": b64(image)}, **extra}], "parameters": parameters[model]})
        expect(v1.status_code == 200, f"v1 {model}: {v1.status_code} {v1.text[:300]}")
        inputs = [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64(image)]}]
        inputs += [{"name": k, "datatype": "BYTES", "shape": [1], "data": [v]} for k, v in extra.items()]
        v2 = httpx.post(f"{url}/v2/models/{model}/infer", timeout=timeout,
                        json={"inputs": inputs, "parameters": parameters[model]})
        expect(v2.status_code == 200, f"v2 {model}: {v2.status_code} {v2.text[:300]}")
        client = grpcclient.InferenceServerClient(grpc_target)
        try:
            tensors = []
            for name, value in [("image", image), *((k, v.encode()) for k, v in extra.items())]:
                tensor = grpcclient.InferInput(name, [1], "BYTES")
                tensor.set_data_from_numpy(np.array([value], dtype=object))
                tensors.append(tensor)
            result = client.infer(model, tensors, parameters=parameters[model], client_timeout=timeout)
            expect(result.get_response() is not None, f"gRPC {model}: no response")
        finally:
            client.close()
        log(f"{model}: v1, v2 REST and gRPC answered")


def fallback_count(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    pattern = r'^predictors_cuda_oom_fallbacks_total\{[^}]*model="face-enhancement"[^}]*\} ([0-9.e+]+)$'
    return sum(float(value) for value in re.findall(pattern, metrics, flags=re.MULTILINE))


def oom(url: str, device_spec: str, side: int, timeout: float) -> None:
    import torch

    device = torch.device(device_spec)
    image = picture(side, side, seed=1)
    before = fallback_count(url)
    free, _ = torch.cuda.mem_get_info(device)
    hog = torch.empty(max(0, free - 64 * MiB), dtype=torch.uint8, device=device)  # another process's memory
    log(f"holding {hog.numel() // MiB} MiB of {device}; the server has about 64 MiB more to work with")
    ready_codes: list[int] = []
    stop = threading.Event()

    def watch_readiness() -> None:  # the server stays ready (and its event loop answers) meanwhile
        while not stop.wait(2):
            ready_codes.append(httpx.get(f"{url}/v2/models/face-enhancement/ready", timeout=10).status_code)

    watcher = threading.Thread(target=watch_readiness, daemon=True)
    watcher.start()
    try:
        started = time.monotonic()
        answer = face_v1(url, image, timeout)
        expect(answer.status_code == 200, f"under memory pressure: {answer.status_code} {answer.text[:300]}")
        pressured = time.monotonic() - started
    finally:
        stop.set()
        watcher.join()
        del hog
        torch.cuda.empty_cache()
    during = fallback_count(url) - before
    expect(during > 0, f"a {side}x{side} request with {free // MiB} MiB taken did not run out of memory; "
                       "raise --side")
    expect(bool(ready_codes) and set(ready_codes) == {200}, f"readiness during the fallback: {ready_codes}")
    started = time.monotonic()
    again = face_v1(url, image, timeout)
    expect(again.status_code == 200, f"after releasing the memory: {again.status_code} {again.text[:300]}")
    after = fallback_count(url) - before - during
    expect(after == 0, f"still falling back after the memory was released ({after} more)")
    log(f"face-enhancement {side}x{side}: {during:.0f} split/fallback steps under pressure ({pressured:.1f} s), "
        f"then on the GPU again ({time.monotonic() - started:.1f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.gpu_smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["probe", "runner", "requests", "oom"])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--grpc", default="127.0.0.1:8081")
    parser.add_argument("--models", default="general-recognition,image-classification,face-enhancement,"
                                            "visual-entailment")
    parser.add_argument("--side", type=int, default=1024, help="picture side of the oom check")
    parser.add_argument("--timeout", type=float, default=240.0, help="per request, seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "probe":
            try:
                probe(args.device)
            except SmokeFailure as error:
                log(f"FAILED: {error}")
                return 2
        elif args.command == "runner":
            runner(args.device)
        elif args.command == "requests":
            requests(args.url.rstrip("/"), args.grpc, args.models.split(","), args.timeout)
        else:
            oom(args.url.rstrip("/"), args.device, args.side, args.timeout)
    except SmokeFailure as error:
        log(f"FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
