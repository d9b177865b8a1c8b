"""GPEN portrait enhancement (ModelScope `damo/cv_gpen_image-portrait-enhancement`, and `-hires`).

Loads the published directory with ModelScope's own classes (GPEN `FullGenerator`, `RetinaFaceDetection`,
RealESRNet `RRDBNet`, EQFace `FQA`) and runs upstream's `ImagePortraitEnhancementPipeline` arithmetic,
split across the serving stages:

- ``prepare`` (preprocess, worker pool): decode (RGB, EXIF applied), size limit, the bilinear x2 resize
  and RGB->BGR that upstream detects on, RetinaFace detection (upstream's ``detect``), alignment
  (``warp_and_crop_face``). ``require_face`` with no face detected -> 422 ``FACE_NOT_FOUND``.
- ``forward`` (device thread, all images of the batch together): EQFace quality of every original face
  (faces below upstream's 0.1 are not enhanced, exactly as upstream skips them, so no generator pass is
  spent on them), GPEN on all remaining faces of the batch in chunks of ``max_faces_per_forward``,
  EQFace features of the enhanced faces, and the x2 background super-resolution per image.
- ``finish`` (postprocess, worker pool): upstream's identity check (cosine distance of the EQFace
  features <= 0.15), the paste-back with upstream's blurred mask and inverse warps, the final blend,
  the quality score, encoding.

Colour order: the wire is RGB; upstream works in BGR (detection, warps, paste-back, the SR output) and
feeds GPEN/EQFace RGB crops. Internally every array is named after its order and the result is turned
back into RGB once, before encoding.

``quality_score`` is the SSIM (luma, Gaussian-free 7x7 windows as scikit-image computes it, data range
255) between the input resized to the output size (bilinear, the image upstream detects on) and the
output, clipped to [0, 1]. 1 means the output keeps the input's structure (only sharpened/upscaled);
low values mean the model changed the picture a lot (a hallucinated or misplaced face, artefacts)
and the result should be looked at. ``needs_review`` is ``quality_score < review_threshold``.

Options (predictor.json ``options``):

- ``max_image_side`` (2000): longest input side; larger -> 413 ``IMAGE_TOO_LARGE`` before any model runs.
- ``max_faces_per_forward`` (4): GPEN batch size; GPU memory needed grows with it (~0.5 GB per face at
  512 px in fp32 on top of the weights; size it with the largest input's super-resolution).
- ``max_faces_per_image`` (20): faces beyond the 20 most confident ones are left as they are
  (upstream has no limit; a random or broken detector could otherwise queue hundreds of 512 px passes).
- ``review_threshold`` (0.5): ``needs_review`` below it; counted in
  ``predictors_results_needing_review_total``.
- ``warmup_face`` (true on CUDA, false on CPU): run one GPEN pass in the warm-up (CUDA kernels are then
  ready before the first request; on CPU it would only add ~6 s to start-up).
- ``generator_size`` (512, or 1024 when the directory path contains ``hires``, as upstream decides).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, Literal, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from predictors.codecs.images import encode_image
from predictors.codecs.types import OutputSpec
from predictors.device import CPU, DeviceReplicas, is_out_of_memory, to_device
from predictors.errors import FaceNotFound, ImageTooLarge, InvalidImage
from predictors.models.base import VisionPredictor

logger = logging.getLogger(__name__)

T = TypeVar("T")

GENERATOR_FILE = "pytorch_model.pt"
SR_FILE = "super_resolution/realesrnet_x2.pth"
DETECTOR_FILE = "face_detection/RetinaFace-R50.pth"
QUALITY_BACKBONE_FILE = "face_quality/eqface_backbone.pth"
QUALITY_HEAD_FILE = "face_quality/eqface_quality.pth"

# upstream's constants (ImagePortraitEnhancementPipeline.__init__)
DETECTION_THRESHOLD = 0.9
FACE_QUALITY_THRESHOLD = 0.1
IDENTITY_THRESHOLD = 0.15
SR_SCALE = 2

DEFAULT_MAX_IMAGE_SIDE = 2000
DEFAULT_MAX_FACES_PER_FORWARD = 4
DEFAULT_MAX_FACES_PER_IMAGE = 20
DEFAULT_REVIEW_THRESHOLD = 0.5
#: RetinaFace's reflect padding and anchors need a few pixels
MIN_IMAGE_SIDE = 2


class FaceEnhancementParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output_format: Literal["jpeg", "png"] = Field("jpeg", description="Encoding of the returned image.")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality (ignored for PNG).")
    require_face: bool = Field(True, description="422 FACE_NOT_FOUND when no face is detected.")
    upscale: bool = Field(True, description="x2 super-resolution of the background (upstream's use_sr).")


@dataclass
class AlignedFace:
    """One detected face after alignment (upstream's loop variables before the quality check)."""

    aligned_rgb: np.ndarray  # `of`: size x size x 3 uint8, the generator input
    aligned_112_rgb: np.ndarray  # `of_112`: 112 x 112 x 3 uint8, the EQFace input
    tfm_inv: np.ndarray  # 2x3 inverse similarity transform (aligned -> image)
    score: float


@dataclass
class PreparedImage:
    rgb: np.ndarray  # the decoded input, H x W x 3 uint8 RGB (upstream's SR input)
    img_bgr: np.ndarray  # upstream's `img`: the input at output size, BGR (detection, warps, SSIM)
    upscale: bool
    faces: list[AlignedFace]
    warmup: bool = False


@dataclass
class EnhancedFace:
    index: int  # into PreparedImage.faces
    original_feature: np.ndarray  # `fea_o`
    enhanced_bgr: np.ndarray  # `ef`: size x size x 3 uint8 BGR
    enhanced_feature: np.ndarray  # `fea_e`
    enhanced_quality: float  # `fq_e` (upstream computes it and does not use it)


@dataclass
class RawResult:
    faces: list[EnhancedFace] = field(default_factory=list)
    background_bgr: np.ndarray | None = None  # upstream's `img_sr` (None when not upscaling)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sr_output_size(width: int, height: int) -> tuple[int, int]:
    """Upstream's x2 SR output size: reflect-pad odd sides by 1, run, crop off only the pad (not 2x it)."""
    return SR_SCALE * width + width % 2, SR_SCALE * height + height % 2


def paste_mask(size: int = 512) -> np.ndarray:
    """Upstream's blurred rectangle used to paste a 512 px face back (built at 512, resized to `size`)."""
    mask: np.ndarray = np.zeros((512, 512, 3), np.float32)
    cv2.rectangle(mask, (26, 26), (486, 486), (1, 1, 1), -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (101, 101), 4)
    mask = cv2.GaussianBlur(mask, (101, 101), 4)
    return np.asarray(cv2.resize(mask, (size, size)))


def luma(image_bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)


def ssim_score(reference_bgr: np.ndarray, output_bgr: np.ndarray) -> float:
    """SSIM of the luma planes in [0, 1]; images smaller than the 7x7 window use one global window."""
    from skimage.metrics import structural_similarity

    a, b = luma(reference_bgr), luma(output_bgr)
    if min(a.shape) >= 7:
        value = structural_similarity(a, b, data_range=255.0)
    else:
        c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
        mean_a, mean_b = a.mean(), b.mean()
        cov = ((a - mean_a) * (b - mean_b)).mean()
        value = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / (
            (mean_a**2 + mean_b**2 + c1) * (a.var() + b.var() + c2)
        )
    return float(min(1.0, max(0.0, value)))


class FaceEnhancementPredictor(VisionPredictor[PreparedImage, RawResult]):
    predictor_name = "face-enhancement"
    outputs: ClassVar[tuple[OutputSpec, ...]] = (
        OutputSpec("image", "BYTES"),
        OutputSpec("faces", "INT32"),
        OutputSpec("quality_score", "FP32"),
        OutputSpec("needs_review", "BOOL"),
        OutputSpec("width", "INT32"),
        OutputSpec("height", "INT32"),
    )
    Parameters = FaceEnhancementParameters

    # ---- loading -------------------------------------------------------------------------------

    def load_weights(self, device: torch.device) -> None:
        from modelscope.models.cv.image_portrait_enhancement import gpen
        from modelscope.models.cv.image_portrait_enhancement.eqface import fqa
        from modelscope.models.cv.image_portrait_enhancement.retinaface import detection
        from modelscope.models.cv.super_resolution import rrdbnet_arch

        options = self.config.options
        self.max_image_side = int(options.get("max_image_side", DEFAULT_MAX_IMAGE_SIDE))
        self.max_faces_per_forward = max(
            1, int(options.get("max_faces_per_forward", DEFAULT_MAX_FACES_PER_FORWARD))
        )
        self.max_faces_per_image = max(
            0, int(options.get("max_faces_per_image", DEFAULT_MAX_FACES_PER_IMAGE))
        )
        self.review_threshold = float(options.get("review_threshold", DEFAULT_REVIEW_THRESHOLD))
        self.warmup_face = bool(options.get("warmup_face", device.type == "cuda"))
        # upstream: `if 'hires' in model: self.size = 1024`
        default_size = 1024 if "hires" in str(self.model_dir) else 512
        self.size = int(options.get("generator_size", default_size))
        directory = self.model_dir

        generator = gpen.FullGenerator(self.size, 512, 8, 2, narrow=1)
        generator.load_state_dict(
            torch.load(directory / GENERATOR_FILE, map_location="cpu", weights_only=True), strict=True
        )

        # RetinaFaceDetection sets the process-wide cudnn.benchmark; keep the process's own setting.
        benchmark = torch.backends.cudnn.benchmark
        try:
            detector = detection.RetinaFaceDetection(str(directory / DETECTOR_FILE), "cpu")
        finally:
            torch.backends.cudnn.benchmark = benchmark
        self._detector_cfg = detector.cfg

        sr = rrdbnet_arch.RRDBNet(
            num_in_ch=3, num_out_ch=3, num_feat=32, num_block=23, num_grow_ch=32, scale=SR_SCALE
        )
        sr.load_state_dict(
            torch.load(directory / SR_FILE, map_location="cpu", weights_only=True)["params_ema"], strict=True
        )

        quality = fqa.FQA(str(directory / QUALITY_BACKBONE_FILE), str(directory / QUALITY_HEAD_FILE), "cpu")

        modules = {
            "generator": generator,
            "detector": detector.net,
            "sr": sr,
            "quality_backbone": quality.BACKBONE,
            "quality_head": quality.QUALITY,
        }
        self.replicas = DeviceReplicas({name: m.to(device).eval() for name, m in modules.items()}, device)
        self.mask = paste_mask(self.size)

    def warmup_item(self) -> Mapping[str, Any]:
        side = max(MIN_IMAGE_SIDE, min(32, self.max_image_side))
        return {"image": Image.new("RGB", (side, side), (128, 128, 128)), "warmup": True}

    # ---- upstream's per-network steps, bound to a device ---------------------------------------

    def _detect(
        self, modules: Mapping[str, torch.nn.Module], device: torch.device, img_bgr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        from modelscope.models.cv.image_portrait_enhancement.retinaface.detection import RetinaFaceDetection

        detector = SimpleNamespace(net=modules["detector"], cfg=self._detector_cfg, device=device)
        return RetinaFaceDetection.detect(detector, img_bgr)  # type: ignore[arg-type]

    @staticmethod
    def _face_quality(
        modules: Mapping[str, torch.nn.Module], device: torch.device, faces: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """EQFace on a batch of 112x112 crops: upstream's `FQA.get_face_quality`, batched."""
        images = to_device(torch.from_numpy(np.stack(faces)), device).permute(0, 3, 1, 2).flip(1)
        images = (images - 127.5) / 128.0
        feature, fc = modules["quality_backbone"](images, True)
        quality = modules["quality_head"](fc)
        return quality[:, 0].float().cpu().numpy(), feature.float().cpu().numpy()

    def _enhance(
        self, modules: Mapping[str, torch.nn.Module], device: torch.device, faces_rgb: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """GPEN on aligned RGB faces: upstream's `enhance_face` (img2tensor/tensor2img), batched."""
        batch = np.stack([cv2.resize(face, (self.size, self.size)) for face in faces_rgb])
        images = to_device(torch.from_numpy(batch), device) / 255.0
        images = ((images - 0.5) / 0.5).permute(0, 3, 1, 2)
        out, _ = modules["generator"](images)
        out = (out * 0.5 + 0.5).permute(0, 2, 3, 1).flip(3)  # RGB -> BGR
        return list((np.clip(out.float().cpu().numpy(), 0, 1) * 255.0).astype(np.uint8))

    @staticmethod
    def _super_resolve(
        modules: Mapping[str, torch.nn.Module], device: torch.device, rgb: np.ndarray
    ) -> np.ndarray:
        """Upstream's `sr_process` (RGB uint8 in, x2 BGR uint8 out), run on `device`."""
        from modelscope.pipelines.cv.image_portrait_enhancement_pipeline import (
            ImagePortraitEnhancementPipeline,
        )

        owner = SimpleNamespace(sr_model=modules["sr"], device=device, scale=SR_SCALE)
        return ImagePortraitEnhancementPipeline.sr_process(owner, rgb)  # type: ignore[arg-type]

    def _outside_device_thread(self, work: Callable[[Mapping[str, torch.nn.Module], torch.device], T]) -> T:
        """Model work in the worker pool (detection): on the model's device, CPU copy on CUDA OOM."""
        device = self.replicas.primary
        with torch.inference_mode():
            try:
                return work(self.replicas.on(device), device)
            except Exception as error:  # noqa: BLE001 - only OOM is handled
                if not is_out_of_memory(error) or device == CPU:
                    raise
            torch.cuda.empty_cache()
            self.metrics.oom_fallbacks.labels(self.name, "cpu_fallback").inc()
            logger.warning("model %s: CUDA out of memory in face detection; running it on the CPU", self.name)
            return work(self.replicas.on(CPU), CPU)

    # ---- the serving steps ---------------------------------------------------------------------

    def prepare(self, item: Mapping[str, Any], params: Any) -> PreparedImage:
        from modelscope.models.cv.image_portrait_enhancement.align_faces import warp_and_crop_face

        image: Image.Image = item["image"]
        width, height = image.size
        if max(width, height) > self.max_image_side:
            raise ImageTooLarge(
                f"'image' is {width}x{height}; the longest side may be at most {self.max_image_side} px"
            )
        if min(width, height) < MIN_IMAGE_SIDE:
            raise InvalidImage(
                f"'image' is {width}x{height}; both sides must be at least {MIN_IMAGE_SIDE} px"
            )
        warmup = bool(item.get("warmup", False))
        rgb = np.array(image.convert("RGB"))  # upstream's LoadImage.convert_to_ndarray for PIL input
        if params.upscale:
            img_bgr = cv2.cvtColor(cv2.resize(rgb, sr_output_size(width, height)), cv2.COLOR_RGB2BGR)
        else:
            img_bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

        boxes, landmarks = self._outside_device_thread(
            lambda modules, device: self._detect(modules, device, img_bgr)
        )
        faces: list[AlignedFace] = []
        detected = 0
        for box, points in zip(boxes, landmarks, strict=True):
            if box[4] < DETECTION_THRESHOLD:
                continue
            detected += 1
            if len(faces) >= self.max_faces_per_image:
                continue
            aligned, aligned_112, tfm_inv = warp_and_crop_face(
                img_bgr, np.reshape(points, (2, 5)), crop_size=(self.size, self.size)
            )
            faces.append(
                AlignedFace(aligned[..., ::-1].copy(), aligned_112[..., ::-1].copy(), tfm_inv, float(box[4]))
            )
        if detected > len(faces):
            logger.warning(
                "model %s: %d faces detected; enhancing the first %d (max_faces_per_image)",
                self.name,
                detected,
                len(faces),
            )
        if warmup:
            faces = faces[:1] if self.warmup_face else []
            if self.warmup_face and not faces:  # exercise the generator on a centred pseudo-face
                faces = [self._centre_face(img_bgr)]
        elif not faces and params.require_face:
            raise FaceNotFound(
                "no face was detected in 'image' (set parameters.require_face=false to get the "
                "image back without face enhancement)"
            )
        return PreparedImage(rgb, img_bgr, params.upscale, faces, warmup)

    def _centre_face(self, img_bgr: np.ndarray) -> AlignedFace:
        size = self.size
        height, width = img_bgr.shape[:2]
        tfm_inv = np.array([[width / size, 0, 0], [0, height / size, 0]], np.float64)
        aligned = cv2.resize(img_bgr, (size, size))[..., ::-1].copy()
        return AlignedFace(aligned, cv2.resize(aligned, (112, 112)), tfm_inv, 1.0)

    def forward(self, batch: Sequence[PreparedImage], device: torch.device) -> list[RawResult]:
        modules = self.replicas.on(device)
        results = [RawResult() for _ in batch]
        all_faces = [
            (i, j, face) for i, prepared in enumerate(batch) for j, face in enumerate(prepared.faces)
        ]

        # 1. quality of the original faces; upstream enhances only those >= 0.1
        kept: list[tuple[int, int, AlignedFace, np.ndarray]] = []
        for chunk in _chunks(all_faces, self.max_faces_per_forward):
            qualities, features = self._face_quality(
                modules, device, [face.aligned_112_rgb for _, _, face in chunk]
            )
            for (i, j, face), quality, feature in zip(chunk, qualities, features, strict=True):
                if quality >= FACE_QUALITY_THRESHOLD:
                    kept.append((i, j, face, feature))

        # 2. GPEN on all kept faces of the batch, then EQFace on upstream's crop of each enhanced face
        ss = self.size // 256
        for kept_chunk in _chunks(kept, self.max_faces_per_forward):
            enhanced = self._enhance(modules, device, [face.aligned_rgb for _, _, face, _ in kept_chunk])
            crops = [cv2.resize(ef[35 * ss : -33 * ss, 32 * ss : -36 * ss], (112, 112)) for ef in enhanced]
            # upstream passes this BGR crop where the original face was RGB: kept as is
            qualities, features = self._face_quality(modules, device, crops)
            for (i, j, _, original), ef, quality, feature in zip(
                kept_chunk, enhanced, qualities, features, strict=True
            ):
                results[i].faces.append(
                    EnhancedFace(
                        index=j,
                        original_feature=original,
                        enhanced_bgr=ef,
                        enhanced_feature=feature,
                        enhanced_quality=float(quality),
                    )
                )

        # 3. background super-resolution, per image (sizes differ)
        for prepared, result in zip(batch, results, strict=True):
            if prepared.upscale:
                result.background_bgr = self._super_resolve(modules, device, prepared.rgb)
                if result.background_bgr.shape != prepared.img_bgr.shape:
                    raise RuntimeError(
                        f"super-resolution returned {result.background_bgr.shape}, "
                        f"expected {prepared.img_bgr.shape}"
                    )
        return results

    def compose(self, prepared: PreparedImage, raw: RawResult) -> tuple[np.ndarray, int]:
        """Upstream's identity check and paste-back loop and final blend; -> (BGR image, faces pasted)."""
        from scipy.spatial.distance import pdist, squareform

        img = prepared.img_bgr
        height, width = img.shape[:2]
        full_mask = np.zeros(img.shape, dtype=np.float32)
        full_img = np.zeros(img.shape, dtype=np.uint8)
        pasted = 0
        for face in raw.faces:
            dist = squareform(pdist([face.original_feature, face.enhanced_feature], "cosine")).mean()
            if dist > IDENTITY_THRESHOLD:
                continue
            ef = face.enhanced_bgr
            tfm_inv = prepared.faces[face.index].tfm_inv
            tmp_mask = cv2.resize(self.mask, ef.shape[:2])
            tmp_mask = cv2.warpAffine(tmp_mask, tfm_inv, (width, height), flags=3)
            tmp_img = cv2.warpAffine(ef, tfm_inv, (width, height), flags=3)
            mask = np.clip(tmp_mask - full_mask, 0, 1)
            where = np.where(mask > 0)
            full_mask[where] = tmp_mask[where]
            full_img[where] = tmp_img[where]
            pasted += 1
        base = raw.background_bgr if prepared.upscale and raw.background_bgr is not None else img
        out = cv2.convertScaleAbs(base * (1 - full_mask) + full_img * full_mask)
        return out.astype(np.uint8), pasted

    def finish(self, prepared: PreparedImage, raw: RawResult, params: Any) -> dict[str, Any]:
        out_bgr, pasted = self.compose(prepared, raw)
        score = ssim_score(prepared.img_bgr, out_bgr)
        needs_review = score < self.review_threshold
        if needs_review and not prepared.warmup:
            self.metrics.review_flags.labels(self.name).inc()
        height, width = out_bgr.shape[:2]
        image = Image.fromarray(np.ascontiguousarray(out_bgr[..., ::-1]))  # BGR -> RGB, once
        return {
            "image": encode_image(image, params.output_format, params.jpeg_quality),
            "faces": pasted,
            "quality_score": score,
            "needs_review": needs_review,
            "width": width,
            "height": height,
        }
