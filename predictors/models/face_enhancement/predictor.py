"""GPEN portrait enhancement (ModelScope `damo/cv_gpen_image-portrait-enhancement`, and `-hires`).

Loads the published directory with ModelScope's own classes (GPEN `FullGenerator`, `RetinaFaceDetection`,
RealESRNet `RRDBNet`, EQFace `FQA`) and runs upstream's `ImagePortraitEnhancementPipeline` arithmetic,
split across the serving stages:

- ``prepare`` (preprocess, worker pool): decode (RGB, EXIF applied), size limit, the bilinear x2 resize
  and RGB->BGR that upstream detects on, RetinaFace detection (upstream's ``detect``, handed to the
  device thread with its out-of-memory policy; prior boxes cached per input size), alignment
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

Options (predictor.json ``options``, `FaceEnhancementOptions`; an unknown one stops the server at start-up):

- ``max_image_side`` (2000): longest input side; larger -> 413 ``IMAGE_TOO_LARGE`` before any model runs
  (the same limit as predictor.json's top-level ``max_image_side``, which wins when both are set).
- ``max_faces_per_forward`` (4): GPEN batch size; GPU memory needed grows with it (~0.5 GB per face at
  512 px in fp32 on top of the weights; size it with the largest input's super-resolution).
- ``max_faces_per_image`` (20): faces beyond the 20 most confident ones are left as they are
  (upstream has no limit; a random or broken detector could otherwise queue hundreds of 512 px passes).
- ``review_threshold`` (0.5): ``needs_review`` below it; counted (by the runtime) in
  ``predictors_results_needing_review_total``.
- ``warmup_face`` (true on CUDA, false on CPU): run one GPEN pass in the warm-up (CUDA kernels are then
  ready before the first request; on CPU it would only add ~6 s to start-up).
- ``generator_size`` (512, or 1024 when the directory path contains ``hires``, as upstream decides).
- ``sr_tile_size`` (512): the background super-resolution runs in tiles of at most this many input
  pixels a side, so its memory is bounded by the tile, not the picture (~0.5 GB of activations for a
  512 px tile in fp32; the whole 2000 px picture at once would need several GB). Pictures no larger
  than one tile (after upstream's pad to even sides) run in one pass, exactly as upstream. A multiple of 2.
- ``sr_tile_overlap`` (32): input pixels of neighbouring picture each tile sees as context and drops;
  with it the tiled output is within 1 grey level of the whole-picture pass (`sr_tiles`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from math import ceil
from typing import Any, ClassVar, Literal, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from predictors.codecs.images import encode_image
from predictors.codecs.types import AnswerOutputs, OutputSpec
from predictors.device import DeviceReplicas, to_device
from predictors.errors import FaceNotFound, ImageTooLarge, InvalidImage
from predictors.models.base import Predictor, reading
from predictors.models.face_enhancement import gpen_ops, layout, sr_tiles
from predictors.settings import ModelOptions

logger = logging.getLogger(__name__)

T = TypeVar("T")

# upstream's constants (ImagePortraitEnhancementPipeline.__init__)
DETECTION_THRESHOLD = 0.9
FACE_QUALITY_THRESHOLD = 0.1
IDENTITY_THRESHOLD = 0.15
SR_SCALE = layout.SR_SCALE


DEFAULT_MAX_IMAGE_SIDE = 2000
DEFAULT_MAX_FACES_PER_FORWARD = 4
DEFAULT_MAX_FACES_PER_IMAGE = 20
DEFAULT_REVIEW_THRESHOLD = 0.5
#: super-resolution tiles: bounded memory; pictures up to this size run in one pass, as upstream
DEFAULT_SR_TILE_SIZE = 512
#: context around each tile (input px): the tiled output is then within 1 grey level of one pass
DEFAULT_SR_TILE_OVERLAP = 32
#: input sizes whose detector prior boxes are kept
PRIOR_BOXES_CACHE_SIZE = 32
#: RetinaFace's reflect padding and anchors need a few pixels
MIN_IMAGE_SIDE = 2


class FaceEnhancementOptions(ModelOptions):
    """predictor.json ``options`` (see the module docstring for what each one does)."""

    #: the longest accepted side; predictor.json's top-level ``max_image_side`` is the same limit and wins
    max_image_side: int | None = Field(None, ge=1)
    max_faces_per_forward: int = Field(DEFAULT_MAX_FACES_PER_FORWARD, ge=1)
    max_faces_per_image: int = Field(DEFAULT_MAX_FACES_PER_IMAGE, ge=0)
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    #: default: true on CUDA, false on CPU
    warmup_face: bool | None = None
    #: default: 1024 when the directory path contains "hires", else 512
    generator_size: int | None = Field(None, ge=1)
    sr_tile_size: int = Field(DEFAULT_SR_TILE_SIZE, ge=sr_tiles.CELL, multiple_of=sr_tiles.CELL)
    sr_tile_overlap: int = Field(DEFAULT_SR_TILE_OVERLAP, ge=0, multiple_of=sr_tiles.CELL)


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


def prior_boxes(cfg: Mapping[str, Any], height: int, width: int) -> torch.Tensor:
    """Upstream's `PriorBox(cfg, (height, width)).forward()`, bit for bit, without its Python loop.

    Rows are [cx, cy, s_kx, s_ky] per feature-map cell (row-major), per min size, per step; every value
    is computed in float64 with upstream's operations in upstream's order, then rounded to float32 as
    `torch.Tensor(list)` does.
    """
    rows = []
    for step, min_sizes in zip(cfg["steps"], cfg["min_sizes"], strict=True):
        i, j = np.meshgrid(np.arange(ceil(height / step)), np.arange(ceil(width / step)), indexing="ij")
        cx = (j + 0.5) * step / width
        cy = (i + 0.5) * step / height
        per_size = [
            np.stack([cx, cy, np.full(cx.shape, size / width), np.full(cx.shape, size / height)], axis=-1)
            for size in min_sizes
        ]
        rows.append(np.stack(per_size, axis=2).reshape(-1, 4))
    output = torch.from_numpy(np.concatenate(rows)).float()
    if cfg["clip"]:
        output.clamp_(max=1, min=0)
    return output


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


class FaceEnhancementPredictor(Predictor[PreparedImage, RawResult]):
    predictor_name = "face-enhancement"
    outputs: ClassVar[tuple[OutputSpec, ...]] = (
        OutputSpec("image", "BYTES", image_format_parameter="output_format"),
        OutputSpec("faces", "INT32"),
        OutputSpec("quality_score", "FP32"),
        OutputSpec("needs_review", "BOOL"),
        OutputSpec("width", "INT32"),
        OutputSpec("height", "INT32"),
    )
    Parameters = FaceEnhancementParameters
    Options = FaceEnhancementOptions
    options: FaceEnhancementOptions
    answer_outputs = AnswerOutputs(quality="quality_score", faces="faces", review="needs_review")

    # ---- loading -------------------------------------------------------------------------------

    def load_weights(self, device: torch.device) -> None:
        from modelscope.models.cv.image_portrait_enhancement.eqface import fqa
        from modelscope.models.cv.image_portrait_enhancement.retinaface import detection

        options = self.options
        self.max_image_side = self.config.image_limits.max_side or options.max_image_side or DEFAULT_MAX_IMAGE_SIDE
        self.max_faces_per_forward = options.max_faces_per_forward
        self.max_faces_per_image = options.max_faces_per_image
        self.review_threshold = options.review_threshold
        self.warmup_face = device.type == "cuda" if options.warmup_face is None else options.warmup_face
        # upstream: `if 'hires' in model: self.size = 1024`
        self.size = options.generator_size or (1024 if "hires" in str(self.model_dir) else 512)
        directory = self.model_dir

        generator = layout.build_generator(self.size)
        with reading(directory / layout.GENERATOR_FILE) as path:
            generator.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        gpen_ops.use_depthwise_blurs(generator)  # bit-identical to upstream's blurs, faster (docs/performance.md)

        # RetinaFaceDetection sets the process-wide cudnn.benchmark; keep the process's own setting.
        benchmark = torch.backends.cudnn.benchmark
        try:
            with reading(directory / layout.DETECTOR_FILE) as path:
                detector = detection.RetinaFaceDetection(str(path), "cpu")
        finally:
            torch.backends.cudnn.benchmark = benchmark
        self._detector_cfg = detector.cfg

        sr = layout.build_sr_network()
        with reading(directory / layout.SR_FILE) as path:
            sr.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["params_ema"], strict=True)
        # RealESRNet's ~350 narrow convolutions in NHWC (see "detector" below): within 1 grey level of NCHW
        sr = sr.to(memory_format=torch.channels_last)
        with reading(directory):  # FQA reads both of its files in one call: name the directory
            quality = fqa.FQA(str(directory / layout.QUALITY_BACKBONE_FILE),
                              str(directory / layout.QUALITY_HEAD_FILE), "cpu")

        modules = {
            "generator": generator,
            # NHWC weights: oneDNN skips a reorder per convolution (time x0.85 RetinaFace, x0.72 RealESRNet,
            # x0.92 EQFace here); not GPEN, whose modulated convolutions `view` their input as NCHW
            "detector": detector.net.to(memory_format=torch.channels_last),
            "sr": sr,
            "quality_backbone": quality.BACKBONE.to(memory_format=torch.channels_last),
            "quality_head": quality.QUALITY,
        }
        self.replicas = DeviceReplicas({name: m.eval() for name, m in modules.items()}, device)
        self.mask = paste_mask(self.size)
        # Most requests share a handful of sizes; a prior set is ~1 MB at 1500 px.
        self._prior_boxes = functools.lru_cache(maxsize=PRIOR_BOXES_CACHE_SIZE)(self._make_prior_boxes)

    def warmup_item(self) -> Mapping[str, Any]:
        side = max(MIN_IMAGE_SIDE, min(32, self.max_image_side))
        return {"image": Image.new("RGB", (side, side), (128, 128, 128))}

    def prepare_warmup(self, params: Any) -> PreparedImage:
        """The warm-up item prepared as a warm-up: one face at most (a centred pseudo-face when none is
        detected) when ``warmup_face``, else none, and never ``FACE_NOT_FOUND``."""
        return self._prepare(self.warmup_item(), params, warmup=True)

    # ---- upstream's per-network steps, bound to a device ---------------------------------------

    def _detect_one(
        self, modules: Mapping[str, torch.nn.Module], device: torch.device, images_bgr: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The device-thread step of `prepare`: detection of one image (sizes differ, so never batched)."""
        (img_bgr,) = images_bgr
        return [self._detect(modules, device, img_bgr)]

    def _detect(
        self, modules: Mapping[str, torch.nn.Module], device: torch.device, img_raw: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Upstream's `RetinaFaceDetection.detect` with its default arguments, step for step, except that
        the prior boxes come from `_prior_boxes` (cached per size) instead of upstream's Python loop."""
        from modelscope.models.cv.image_portrait_enhancement.retinaface.utils import (
            decode,
            decode_landm,
            py_cpu_nms,
        )

        resize, confidence_threshold, nms_threshold, top_k, keep_top_k = 1, 0.9, 0.4, 5000, 750
        variance = self._detector_cfg["variance"]
        img: np.ndarray = np.asarray(img_raw, dtype=np.float32)  # upstream: np.float32(img_raw)
        im_height, im_width = img.shape[:2]
        ss = 1.0
        if max(im_height, im_width) > 1500:  # upstream's "tricky" downscale of large images
            ss = 1000.0 / max(im_height, im_width)
            img = cv2.resize(img, (0, 0), fx=ss, fy=ss)
            im_height, im_width = img.shape[:2]
        scale = torch.Tensor([img.shape[1], img.shape[0], img.shape[1], img.shape[0]]).to(device)
        img -= (104, 117, 123)
        tensor = torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0).to(device)
        loc, conf, landms = modules["detector"](tensor)
        del tensor
        prior_data = self._prior_boxes(im_height, im_width, device)
        boxes = decode(loc.data.squeeze(0), prior_data, variance)
        boxes = (boxes * scale / resize).cpu().numpy()
        scores = conf.squeeze(0).data.cpu().numpy()[:, 1]
        landms = decode_landm(landms.data.squeeze(0), prior_data, variance)
        scale1 = torch.Tensor([im_width, im_height] * 5).to(device)
        landms = (landms * scale1 / resize).cpu().numpy()

        inds = np.where(scores > confidence_threshold)[0]
        boxes, landms, scores = boxes[inds], landms[inds], scores[inds]
        order = scores.argsort()[::-1][:top_k]
        boxes, landms, scores = boxes[order], landms[order], scores[order]
        dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
        keep = py_cpu_nms(dets, nms_threshold)
        dets, landms = dets[keep, :][:keep_top_k, :], landms[keep][:keep_top_k, :]
        landms = landms.reshape((-1, 5, 2)).transpose((0, 2, 1)).reshape(-1, 10)
        return dets / ss, landms / ss

    def _make_prior_boxes(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        return prior_boxes(self._detector_cfg, height, width).to(device)

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

    def _super_resolve(
        self, modules: Mapping[str, torch.nn.Module], device: torch.device, rgb: np.ndarray
    ) -> np.ndarray:
        """Upstream's `sr_process` (RGB uint8 in, x2 BGR uint8 out), run on `device` in tiles."""
        options = self.options
        return sr_tiles.super_resolve(
            modules["sr"], rgb, device, options.sr_tile_size, options.sr_tile_overlap, SR_SCALE
        )

    # ---- the serving steps ---------------------------------------------------------------------

    def prepare(self, item: Mapping[str, Any], params: Any) -> PreparedImage:
        return self._prepare(item, params, warmup=False)

    def _prepare(self, item: Mapping[str, Any], params: Any, warmup: bool) -> PreparedImage:
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
        rgb = np.array(image.convert("RGB"))  # upstream's LoadImage.convert_to_ndarray for PIL input
        if params.upscale:
            img_bgr = cv2.cvtColor(cv2.resize(rgb, sr_output_size(width, height)), cv2.COLOR_RGB2BGR)
        else:
            img_bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

        # On the device thread, under its out-of-memory policy (never on this worker thread: on a GPU
        # it would share the default stream with the batches and bypass that policy).
        ((boxes, landmarks),) = self.run_on_device(
            lambda images, device: self._detect_one(self.replicas.on(device), device, images), [img_bgr]
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
        return PreparedImage(rgb, img_bgr, params.upscale, faces)

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
