"""A small v1 client for humans: `predictors infer NAME IMAGE` prints the top-k table."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import httpx


def print_top_k(url: str, model: str, image: Path, top_k: int, timeout: float) -> int:
    body = {
        "instances": [{"image": {"b64": base64.b64encode(image.read_bytes()).decode("ascii")}}],
        "parameters": {"top_k": top_k},
    }
    try:
        response = httpx.post(f"{url.rstrip('/')}/v1/models/{model}:predict", json=body, timeout=timeout)
    except httpx.HTTPError as error:
        print(f"cannot reach {url}: {error}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        try:
            detail = response.json()
            print(f"{response.status_code} {detail.get('code')}: {detail.get('error')} "
                  f"(request_id {detail.get('request_id')})", file=sys.stderr)
        except ValueError:
            print(f"{response.status_code}: {response.text[:500]}", file=sys.stderr)
        return 1
    prediction = response.json()["predictions"][0]
    labels, scores = prediction["labels"], prediction["scores"]
    width = max([len("label"), *(len(label) for label in labels)])
    print(f"{'rank':>4}  {'label':<{width}}  score")
    for rank, (label, score) in enumerate(zip(labels, scores, strict=True), start=1):
        print(f"{rank:>4}  {label:<{width}}  {score:.6f}")
    return 0
