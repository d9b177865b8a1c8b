"""The approach users pick today: a FastAPI service calling the ModelScope pipeline once per request.

This copies the common blog recipe: build the pipeline once at start-up, then a plain ``def`` endpoint
(FastAPI runs it in its thread pool, 40 threads by default) that decodes the base64 image and calls
``pipe(image)``. Every request is a separate forward pass; there is no batching, no queue bound and
no deadline. ``pipeline(Tasks.general_recognition, model=dir)`` raises TypeError in modelscope 1.40.2,
so the pipeline class is built directly: ``GeneralRecognitionPipeline(model=dir, device='cpu')``.

With ``--backend torch`` (for the cheap models used by ``--model image-classification|tiny`` and the
smoke test) the same endpoint calls a torch-exported classifier with the same recipe instead.

Run: ``python -m bench.baseline_fastapi --model-dir ABS_DIR --port P [--backend modelscope|torch]``.
Endpoint: ``POST /v1/models/{name}:predict`` with ``{"instances": [{"image": {"b64": ...}}]}``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from PIL import Image

app = FastAPI()
state: dict[str, Any] = {}


def build_modelscope(model_dir: Path) -> Any:
    from modelscope.pipelines.cv.general_recognition_pipeline import GeneralRecognitionPipeline

    return GeneralRecognitionPipeline(model=str(model_dir), device="cpu")


def build_torch(model_dir: Path) -> Any:
    from torchvision import transforms

    config = json.loads((model_dir / "config.json").read_text())
    network = torch.export.load(str(model_dir / "model.pt2")).module()
    labels = (model_dir / "labels.txt").read_text().split()
    transform = transforms.Compose(
        [
            transforms.Resize(config.get("resize", 256)),
            transforms.CenterCrop(config.get("input_size", 224)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )

    def pipe(image: Image.Image) -> dict[str, Any]:
        with torch.no_grad():
            logits = network(transform(image).unsqueeze(0))[0]
        index = int(logits.argmax())
        return {"scores": [float(logits[index])], "labels": [labels[index]]}

    return pipe


@app.get("/info")
def info() -> dict[str, Any]:
    return {
        "torch_num_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "backend": state["backend"],
    }


@app.get("/v2/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@app.post("/v1/models/{name}:predict")
def predict(name: str, body: dict[str, Any]) -> dict[str, Any]:
    predictions = []
    for instance in body["instances"]:
        image = Image.open(io.BytesIO(base64.b64decode(instance["image"]["b64"]))).convert("RGB")
        result = state["pipe"](image)
        predictions.append(
            {
                "labels": [label.strip() for label in result["labels"]],
                "scores": [float(s) for s in result["scores"]],
            }
        )
    return {"predictions": predictions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", choices=["modelscope", "torch"], default="modelscope")
    args = parser.parse_args()
    model_dir = args.model_dir.resolve()  # ModelScope takes a relative path for a hub id
    state["backend"] = args.backend
    state["pipe"] = build_modelscope(model_dir) if args.backend == "modelscope" else build_torch(model_dir)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
