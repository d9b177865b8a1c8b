"""Published documents the tests check against (KServe's CRD schemas, the Open Inference Protocol's specs), found
the same way for each: never copied into the repository, pinned by upstream commit and sha256.

Looked up in $VISION_SHARED_DIR/<subdirectory>, the ../shared beside the checkout (or beside a worktree one level
deeper), then a per-user cache; else the pinned upstream file is downloaded into that cache. Every copy must match
its pinned digest.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PinnedFiles:
    """A set of files from one upstream repository at one commit."""

    #: what the files are, for messages ("KServe CRD schema")
    what: str
    #: where they sit in a shared directory ("schemas/kserve")
    subdirectory: str
    #: the cache directory's name, one per commit
    cache_name: str
    #: file name -> sha256 of the pinned copy
    sha256: dict[str, str]
    #: file name -> its upstream URL (pinned to the commit)
    urls: dict[str, str]
    #: an environment variable that replaces the download URL: a template with `{name}` (the tests use file://)
    url_override: str

    def path(self, name: str, repo: Path | None = None) -> Path:
        """The verified file `name` (module docstring)."""
        repo = repo or REPO
        shared = os.environ.get("VISION_SHARED_DIR", "")
        candidates = [Path(shared) / self.subdirectory / name] if shared else []
        candidates += [base / "shared" / self.subdirectory / name for base in (repo.parent, repo.parent.parent)]
        cached = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vision-predictors" / \
            self.cache_name / name
        for path in [*candidates, cached]:
            if path.is_file() and _sha256(path.read_bytes()) == self.sha256[name]:
                return path
        override = os.environ.get(self.url_override)
        url = override.format(name=name) if override else self.urls[name]
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a pinned https URL
                data = response.read()
        except OSError as error:
            raise RuntimeError(
                f"{self.what} {name} not found in {[str(c.parent) for c in candidates]} or {cached.parent}, and "
                f"downloading {url} failed ({error}): set VISION_SHARED_DIR to a directory holding "
                f"{self.subdirectory}/ or put the file in the cache"
            ) from None
        if _sha256(data) != self.sha256[name]:
            raise RuntimeError(f"{url} does not match its pinned sha256; refusing it")
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(data)
        return cached


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: The KServe CRD schemas the manifests are validated against: KServe's `config/crd/full/` at this commit
#: (master of 2026-08-21, after v0.20.0; the same files as ../shared/schemas/kserve).
KSERVE_COMMIT = "aaac4e294dae2c7b1aa1886447793f3aa1c30912"
KSERVE_SCHEMAS = PinnedFiles(
    what="KServe CRD schema",
    subdirectory="schemas/kserve",
    cache_name=f"kserve-{KSERVE_COMMIT[:12]}",
    sha256={"serving.kserve.io_inferenceservices.yaml":
            "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff"},
    urls={"serving.kserve.io_inferenceservices.yaml": f"https://raw.githubusercontent.com/kserve/kserve/"
          f"{KSERVE_COMMIT}/config/crd/full/serving.kserve.io_inferenceservices.yaml"},
    url_override="VISION_KSERVE_SCHEMA_URL",
)

#: The Open Inference Protocol's documents (kserve/open-inference-protocol at this commit, main of 2025-05-11)
#: and Triton's binary tensor data extension (triton-inference-server/server at its commit): the same files as
#: ../shared/specs/oip (its SOURCE.txt names each file's source path and last commit).
OIP_COMMIT = "d49cc23f89d709d87b210ef9449e273ae243984e"
TRITON_COMMIT = "02c5c956f11ccfcf2a1c1b2d906149d43a71045f"
_OIP_URL = f"https://raw.githubusercontent.com/kserve/open-inference-protocol/{OIP_COMMIT}/specification/protocol/"
OIP_SPECS = PinnedFiles(
    what="Open Inference Protocol document",
    subdirectory="specs/oip",
    cache_name=f"oip-{OIP_COMMIT[:12]}",
    sha256={
        "open_inference_rest.yaml": "719644d1cec52d1c98268ee16f3b75d6de7f523c6686463cbf06bf79134edbb2",
        "open_inference_grpc.proto": "0f715460d60b014a23e06ac8e768cfa3d8336221cdb66bd7aeeab6dc27620b0f",
        "inference_rest.md": "842224871d9084e022dde279973bf2f7c9d5ef732e9b33ad008900bcf7698766",
        "inference_grpc.md": "a546b894ad899945a0903f0b8f32b2afcd632639e4b689ae28f9a6d29f7e8496",
        "extension_binary_data.md": "7a41dd245d91577d14b99891ffffd021f13bbca53af45c3d6faa21f77176ce3b",
    },
    urls={
        **{name: _OIP_URL + name for name in ("open_inference_rest.yaml", "open_inference_grpc.proto",
                                              "inference_rest.md", "inference_grpc.md")},
        "extension_binary_data.md": f"https://raw.githubusercontent.com/triton-inference-server/server/"
                                    f"{TRITON_COMMIT}/docs/protocol/extension_binary_data.md",
    },
    url_override="VISION_OIP_SPEC_URL",
)


def kserve_schema(name: str) -> Path:
    return KSERVE_SCHEMAS.path(name)


def oip_spec(name: str) -> Path:
    return OIP_SPECS.path(name)
