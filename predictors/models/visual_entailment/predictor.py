"""Visual entailment with OFA (ModelScope `damo/ofa_visual-entailment_snli-ve_large_en` and variants).

Given an image, a hypothesis and optionally a premise: is the hypothesis entailed, contradicted or neutral?

Loads the published directory with ModelScope's own pieces: `OfaForAllTasks` (the OFA network, its
tokenizer, the answer trie and per-answer constraint masks built from ``answer2label.json``) and
`OfaVisualEntailmentPreprocessor` (image transform, caption clean-up, the task prompt, tokenisation and
the ``prev_output`` decoder prompt). Medium/Chinese variants are handled by those classes as their
``configuration.json`` says (``language``, ``prompt``, ``patch_image_size``, ``max_src_length`` ...).

What differs from upstream's pipeline:

- ``forward`` scores a whole batch at once. Upstream's "traverse" inference (``_traverse_inference``)
  runs the encoder once, then scores every candidate answer by teacher-forcing ``prompt + answer + eos``
  through the decoder under the answer trie's constraint masks; its batch assembly breaks on prompts of
  different lengths. Here the sources are right-padded (the encoder masks padded keys, positions are not
  shifted) and every ``prompt + answer`` row is right-padded (the decoder is causal, so padding after a
  row's end changes nothing before it; padded targets are scored 0 exactly as upstream does). Batched
  results equal one-by-one results to float rounding.
- It returns the probability of every class, not only of the best answer; the answers are mapped
  yes/no/maybe -> entailment/contradiction/neutral (``options.answer_classes`` in predictor.json
  overrides the mapping for variants with other answer words).
- It runs on the selected device (upstream goes to CUDA whenever one exists).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image
from pydantic import Field

from predictors.codecs.types import AnswerOutputs, InputSpec, OutputSpec
from predictors.device import DeviceReplicas, stack_to_device
from predictors.models.base import ModelFileError, Predictor, reading
from predictors.settings import ModelOptions

logger = logging.getLogger(__name__)

#: the order of `scores` in every response
CLASSES = ("entailment", "contradiction", "neutral")
#: upstream's answers (answer2label.json of the SNLI-VE models) -> our classes
DEFAULT_ANSWER_CLASSES = {"yes": "entailment", "no": "contradiction", "maybe": "neutral"}
HYPOTHESIS_MAX_BYTES = 1024
PREMISE_MAX_BYTES = 2048
TASK = "visual-entailment"


@dataclass(frozen=True)
class EntailmentInput:
    """One item after upstream's preprocessing."""

    #: `<s> prompt </s>` token ids
    source: torch.Tensor
    #: the decoder prompt (`prev_output`: the source without its eos)
    decoder_prompt: torch.Tensor
    #: [3, P, P] normalised image
    patch_image: torch.Tensor
    #: [1] bool
    patch_mask: torch.Tensor


@dataclass(frozen=True)
class AnswerScores:
    """Per candidate answer (upstream's answer order): summed log-probability and softmax probability."""

    log_scores: torch.Tensor
    probabilities: torch.Tensor


def _config_dict(value: Any) -> dict[str, Any]:
    return dict(value) if value is not None else {}


class VisualEntailmentOptions(ModelOptions):
    #: the checkpoint's answers (case-insensitive) -> entailment / contradiction / neutral
    answer_classes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ANSWER_CLASSES))


class VisualEntailmentPredictor(Predictor[EntailmentInput, AnswerScores]):
    predictor_name = "visual-entailment"
    Options = VisualEntailmentOptions
    options: VisualEntailmentOptions
    inputs: ClassVar[tuple[InputSpec, ...]] = (
        InputSpec("image", "image"),
        InputSpec("hypothesis", "text", max_bytes=HYPOTHESIS_MAX_BYTES),
        InputSpec("premise", "text", optional=True, max_bytes=PREMISE_MAX_BYTES),
    )
    outputs: ClassVar[tuple[OutputSpec, ...]] = (
        OutputSpec("label", "BYTES"),
        OutputSpec("scores", "FP32", (len(CLASSES),), element_names=CLASSES),
    )
    answer_outputs = AnswerOutputs(top_score="scores")

    # ---- loading -------------------------------------------------------------------------------

    def load_weights(self, device: torch.device) -> None:
        from modelscope.models.multi_modal import OfaForAllTasks
        from modelscope.preprocessors.ofa import OfaVisualEntailmentPreprocessor
        from modelscope.utils.config import Config
        from modelscope.utils.constant import ModeKeys

        directory = str(self.model_dir.resolve())  # relative paths look like hub ids to ModelScope
        config_path = self.model_dir / "configuration.json"
        with reading(config_path):
            # Checked here first: ModelScope's Config reports invalid JSON with a stray traceback.
            if not isinstance(json.loads(config_path.read_text(encoding="utf-8")), dict):
                raise ModelFileError(config_path, "is not a JSON object")
            cfg = Config.from_file(str(config_path))
        if cfg.get("task") != TASK:
            raise ModelFileError(config_path, f"has task {cfg.get('task')!r}; expected {TASK!r}")
        model_cfg = _config_dict(cfg.get("model"))
        if model_cfg.get("type") != "ofa":
            raise ModelFileError(config_path, f"model.type is {model_cfg.get('type')!r}, not 'ofa'")
        if not model_cfg.get("answer2label"):
            raise ModelFileError(config_path, "names no model.answer2label file; the candidate answers "
                                 "cannot be scored without it")
        if model_cfg.get("gen_type", "generation") != "traverse":
            logger.info("model %s: gen_type is %r; scoring every candidate answer as 'traverse' does",
                        self.name, model_cfg.get("gen_type", "generation"))

        with reading(self.model_dir):  # weights, vocabulary and answer files, read by ModelScope
            upstream = OfaForAllTasks(directory)
            self.preprocessor = OfaVisualEntailmentPreprocessor(cfg, directory, ModeKeys.INFERENCE)
        self.tokenizer = upstream.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.eos_item = upstream.eos_item.clone()

        # upstream's candidate answers and constraint masks, in its chunks (valid_batch_size)
        self.answer_chunks: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = [
            (list(answers), list(masks)) for answers, masks in zip(upstream.val_ans_l, upstream.val_masks_l,
                                                                   strict=True)
        ]
        self.answers = [upstream.index2ans[i] for i in range(len(upstream.index2ans))]
        mapping = {str(k).strip().lower(): v for k, v in
                   self.options.answer_classes.items()}
        classes = [mapping.get(answer.strip().lower()) for answer in self.answers]
        if sorted(c for c in classes if c is not None) != sorted(CLASSES) or None in classes:
            raise ValueError(
                f"{self.model_dir}: the answers {self.answers} do not map one-to-one onto {list(CLASSES)} "
                f"with {mapping}; set options.answer_classes in predictor.json"
            )
        self.answer_classes: list[str] = [c for c in classes if c is not None]
        #: for each class in CLASSES, the index of its answer
        self.class_order = [self.answer_classes.index(c) for c in CLASSES]

        self.replicas = DeviceReplicas({"ofa": upstream.model.eval()}, device)
        self.upstream = upstream

    def warmup_item(self) -> Mapping[str, Any]:
        return {"image": Image.new("RGB", (64, 64), (128, 128, 128)), "hypothesis": "a grey picture"}

    # ---- the four steps ------------------------------------------------------------------------

    def prepare(self, item: Mapping[str, Any], params: Any) -> EntailmentInput:
        # upstream's keys: `text` is the hypothesis, `text2` the premise (its prompt then reads
        # ' can image and text1 " {premise} " imply text2 " {hypothesis} "?')
        data: dict[str, Any] = {"image": item["image"], "text": item["hypothesis"]}
        if item.get("premise") is not None:
            data["text2"] = item["premise"]
        sample = self.preprocessor(data)
        return EntailmentInput(
            source=sample["source"],
            decoder_prompt=torch.as_tensor(sample["decoder_prompt"], dtype=torch.long),
            patch_image=sample["patch_image"],
            patch_mask=sample["patch_mask"],
        )

    def forward(self, batch: Sequence[EntailmentInput], device: torch.device) -> list[AnswerScores]:
        from modelscope.models.multi_modal.ofa.utils.utils import expand_mask
        from modelscope.preprocessors.ofa.utils.collate import collate_tokens

        network: Any = self.replicas.on(device)["ofa"]  # OFAModel
        pad = self.pad_id
        encoder_out = network.encoder(
            input_ids=collate_tokens([item.source for item in batch], pad_idx=pad).to(device),
            patch_images=stack_to_device([item.patch_image for item in batch], device),
            patch_masks=torch.cat([item.patch_mask for item in batch]).to(device),
        )
        prompts = [item.decoder_prompt for item in batch]
        columns = []
        for answers, answer_masks in self.answer_chunks:
            size = len(answers)
            # rows: item-major, answer-minor, exactly as upstream's _traverse_inference builds them
            targets = collate_tokens(
                [torch.cat([prompt[1:], answer, self.eos_item]) for prompt in prompts for answer in answers],
                pad_idx=pad,
            ).to(device)
            prev_output = collate_tokens(
                [torch.cat([prompt, answer]) for prompt in prompts for answer in answers], pad_idx=pad
            ).to(device)
            constraint = collate_tokens(
                [torch.cat([torch.zeros(len(prompt) - 1, mask.size(1), dtype=torch.bool), mask], dim=0)
                 for prompt in prompts for mask in answer_masks],
                pad_idx=pad,
            ).to(device)
            hidden = encoder_out["last_hidden_state"].repeat_interleave(size, dim=0)
            padding_mask = encoder_out["padding_mask"].repeat_interleave(size, dim=0)
            position = encoder_out["position_embedding"].repeat_interleave(size, dim=0)
            decoder_out = network.decoder(
                prev_output,
                encoder_hidden_states=hidden,
                encoder_attention_mask=expand_mask(padding_mask, hidden.dtype, prev_output.shape[-1]),
                src_pos_embed=position,
            )
            decoder_out[0].masked_fill_(~constraint, -math.inf)
            log_probs = network.get_normalized_probs(decoder_out, log_probs=True)
            scores = log_probs.gather(dim=-1, index=targets.unsqueeze(-1)).squeeze(-1)
            scores = scores.masked_fill(targets.eq(pad), 0)
            scores = scores.masked_fill((~constraint).all(2), 0)
            columns.append(scores.sum(1).view(-1, size))
        log_scores = torch.cat(columns, dim=-1).float()
        probabilities = log_scores.softmax(dim=-1)
        return [AnswerScores(s, p) for s, p in zip(log_scores.cpu(), probabilities.cpu(), strict=True)]

    def finish(self, prepared: EntailmentInput, raw: AnswerScores, params: Any) -> dict[str, Any]:
        best = int(raw.log_scores.argmax())  # as upstream: first maximum of the log-scores, answer order
        return {
            "label": self.answer_classes[best],
            "scores": [float(raw.probabilities[i]) for i in self.class_order],
        }
