"""The floor of any HTTP server here: a bare ASGI app on uvicorn that reads the body and answers a fixed
v2-binary-shaped response. Server p50 minus this p50 is what KServe, our codecs and the model add.

Run: ``python -m bench.echo_server --port P``.
"""

from __future__ import annotations

import argparse
import json
import struct
from typing import Any

import uvicorn

_LABELS = struct.pack("<I", 4) + b"zero"
_SCORES = struct.pack("<f", 1.0)
_HEAD = json.dumps(
    {
        "model_name": "echo",
        "outputs": [
            {
                "name": "labels",
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"binary_data_size": len(_LABELS)},
            },
            {
                "name": "scores",
                "datatype": "FP32",
                "shape": [1, 1],
                "parameters": {"binary_data_size": len(_SCORES)},
            },
        ],
    }
).encode()
_BODY = _HEAD + _LABELS + _SCORES


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(len(_HEAD)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
