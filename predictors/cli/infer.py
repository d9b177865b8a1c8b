"""`predictors infer MODEL FILE`: call a running server through the SDK (`predictors_client`) and print
the answer for humans, or as JSON with `--json`. With `--async` the request is submitted as a job and
its result waited for with long polls (the server needs jobs on), then printed the same way.

What the model is comes from its v2 metadata (its outputs), so any served name works: labels print as a
table, face enhancement saves the image and prints its quality, entailment prints the label and scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: exit codes of `predictors infer` (docs/api.md)
EXIT_OK = 0
EXIT_REJECTED = 1  # the server refused the request: 4xx (the input, the image, the model name, no face)
EXIT_USAGE = 2  # bad command line or unreadable file (argparse uses 2 as well)
EXIT_UNREACHABLE = 3  # no connection to the server
EXIT_UNAVAILABLE = 4  # busy, not ready or out of time (503/504, client deadline), retries spent
EXIT_SERVER_ERROR = 5  # the server failed (500) or answered outside its contract

_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def add_arguments(infer: argparse.ArgumentParser) -> None:
    infer.add_argument("name", help="model name, e.g. general-recognition")
    infer.add_argument("image", type=Path, help="image file (JPEG, PNG, WebP, BMP)")
    infer.add_argument("--url", default="http://127.0.0.1:8080")
    infer.add_argument("--top-k", type=int, default=5, help="labels to print (classifiers)")
    infer.add_argument("--hypothesis", help="visual entailment: the statement to test against the image")
    infer.add_argument("--premise", help="visual entailment: optional text premise")
    infer.add_argument("--out", type=Path,
                       help="face enhancement: where to save the image (default FILE-stem.enhanced.jpg here); "
                            "a .png name asks for PNG")
    infer.add_argument("--output-format", choices=["jpeg", "png"], help="face enhancement: image encoding")
    infer.add_argument("--jpeg-quality", type=int, help="face enhancement: 1..100")
    infer.add_argument("--require-face", action=argparse.BooleanOptionalAction, default=None,
                       help="face enhancement: fail with FACE_NOT_FOUND when no face is seen (server default)")
    infer.add_argument("--upscale", action=argparse.BooleanOptionalAction, default=None,
                       help="face enhancement: x2 super-resolution of the background (server default)")
    infer.add_argument("--json", action="store_true", help="print the result as JSON")
    infer.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds, retries included")
    infer.add_argument("--retries", type=int, default=3, help="further attempts on 503 and connection failures")
    infer.add_argument("--protocol", choices=["binary", "json"], default="binary",
                       help="v2 binary tensors (default) or v2 JSON")
    infer.add_argument("--async", dest="as_job", action="store_true",
                       help="submit an asynchronous job and wait for its result (--timeout bounds the wait)")


def exit_code(error: Exception) -> int:
    from predictors_client import ConnectionFailed, Timeout, UnexpectedResponse

    if isinstance(error, ConnectionFailed):
        return EXIT_UNREACHABLE
    status = getattr(error, "status", None)
    if isinstance(error, Timeout) or status in (503, 504):
        return EXIT_UNAVAILABLE
    if isinstance(error, UnexpectedResponse) or status is None or status >= 500:
        return EXIT_SERVER_ERROR
    return EXIT_REJECTED


def model_kind(metadata: dict[str, Any]) -> str:
    outputs = {output.get("name") for output in metadata.get("outputs", [])}
    if {"labels", "scores"} <= outputs:
        return "labels"
    if {"image", "quality_score"} <= outputs:
        return "face"
    if {"label", "scores"} <= outputs:
        return "entailment"
    return "unknown"


def main(args: argparse.Namespace) -> int:
    try:
        from predictors_client import Client, PredictorError
    except ImportError:
        print("predictors infer needs the client SDK: pip install clients/python (vision-predictors-client)",
              file=sys.stderr)
        return EXIT_USAGE
    # httpx logs every request at INFO; the answer is what this command prints
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.image.is_file():
        print(f"predictors infer: {args.image} is not a readable file", file=sys.stderr)
        return EXIT_USAGE
    with Client(args.url, timeout=args.timeout, retries=args.retries, protocol=args.protocol) as client:
        try:
            kind = model_kind(client.metadata(args.name))
            if kind == "entailment" and not args.hypothesis:
                print(f"predictors infer: model '{args.name}' is visual entailment: give --hypothesis",
                      file=sys.stderr)
                return EXIT_USAGE
            if kind not in _PRINTERS:
                print(f"predictors infer: model '{args.name}' has outputs this command does not know",
                      file=sys.stderr)
                return EXIT_USAGE
            result = _as_job(client, kind, args) if args.as_job else _call(client, kind, args)
            _PRINTERS[kind](result, args)
        except PredictorError as error:
            status = f" (HTTP {error.status})" if error.status is not None else ""
            print(f"predictors infer: {error.code}{status}: {error.message} [request_id {error.request_id}]",
                  file=sys.stderr)
            return exit_code(error)
    return EXIT_OK


def _call(client: Any, kind: str, args: argparse.Namespace) -> Any:
    if kind == "labels":
        return client.classify(args.image, model=args.name, top_k=args.top_k)
    if kind == "face":
        return client.enhance_face(args.image, model=args.name, **_face_parameters(args))
    return client.entails(args.image, args.hypothesis, args.premise, model=args.name)


def _as_job(client: Any, kind: str, args: argparse.Namespace) -> Any:
    """The same request as a job: submitted, waited for with long polls until it ends, its result typed the same."""
    from predictors_client.results import entailments_from, faces_from, labels_from

    inputs: dict[str, Any] = {"image": args.image}
    if kind == "labels":
        parameters: dict[str, Any] = {"top_k": args.top_k}
    elif kind == "face":
        parameters = {name: value for name, value in _face_parameters(args).items() if value is not None}
    else:
        parameters = {}
        inputs["hypothesis"] = args.hypothesis
        if args.premise is not None:
            inputs["premise"] = args.premise
    job = client.submit(args.name, inputs, parameters)
    print(f"job {job.id} submitted; waiting for its result", file=sys.stderr)
    # typed: the three converters return lists of different result classes (mypy joins them to `object`)
    converters: dict[str, Callable[[Any], Sequence[Any]]] = {
        "labels": labels_from, "face": faces_from, "entailment": entailments_from}
    return converters[kind](client.result(job, timeout=args.timeout))[0]


def _face_parameters(args: argparse.Namespace) -> dict[str, Any]:
    output_format = args.output_format or (_SUFFIX_FORMATS.get(args.out.suffix.lower()) if args.out else None)
    return {"output_format": output_format, "jpeg_quality": args.jpeg_quality, "require_face": args.require_face,
            "upscale": args.upscale}


def _print_labels(result: Any, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({"labels": result.labels, "scores": result.scores}, ensure_ascii=False))
        return
    width = max([len("label"), *(len(label) for label in result.labels)])
    print(f"{'rank':>4}  {'label':<{width}}  score")
    for rank, (label, score) in enumerate(zip(result.labels, result.scores, strict=True), start=1):
        print(f"{rank:>4}  {label:<{width}}  {score:.6f}")


def _print_face(result: Any, args: argparse.Namespace) -> None:
    extension = "png" if result.format == "png" else "jpg"
    path = result.save(args.out or Path(f"{args.image.stem}.enhanced.{extension}"))
    summary = {"image": str(path), "format": result.format, "width": result.width, "height": result.height,
               "faces": result.faces, "quality_score": result.quality_score, "needs_review": result.needs_review}
    if args.json:
        print(json.dumps(summary))
        return
    review = "yes" if result.needs_review else "no"
    print(f"saved {path} ({result.format}, {result.width}x{result.height})")
    print(f"faces {result.faces}  quality {result.quality_score:.3f}  needs review: {review}")


def _print_entailment(result: Any, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({"label": result.label, "scores": result.scores}))
        return
    print(f"label: {result.label}")
    for name, score in sorted(result.scores.items(), key=lambda item: -item[1]):
        print(f"  {name:<13}  {score:.6f}")


_PRINTERS = {"labels": _print_labels, "face": _print_face, "entailment": _print_entailment}
