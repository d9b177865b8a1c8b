"""The models this package serves: one registration each, from which everything else is derived.

The registry's predictor classes (`models/registry.py`), the demo writers (`predictors.models.demo`), the CLI's
`download` names and hub ids, and the chart's documented model list and resource presets (checked by
`tests/chart/test_model_list.py`) all come from `MODELS`. Classes and writers are named by import path
so that this module imports nothing heavy: `predictors status` and `infer` run without torch, and serving
code never imports `predictors.models.demo` (a writer is imported only by `make-demo-models`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Registration:
    #: the predictor's name: predictor.json's "predictor", the default directory name, the chart's `predictor`
    name: str
    #: "module:Class" of its `Predictor` subclass (whose `predictor_name` is `name`)
    predictor_class: str
    #: "module:function" writing a demo directory in the model's published layout
    demo_writer: str
    #: `predictors download` names -> ModelScope hub ids of the published weights
    hub_models: Mapping[str, str] = field(default_factory=dict)


MODELS: tuple[Registration, ...] = (
    Registration(
        "general-recognition",
        "predictors.models.general_recognition.predictor:GeneralRecognitionPredictor",
        "predictors.models.general_recognition.demo:write",
        {"general-recognition": "damo/cv_resnest101_general_recognition"},
    ),
    Registration(
        "image-classification",
        "predictors.models.image_classification.predictor:ImageClassificationPredictor",
        "predictors.models.image_classification.demo:write",
    ),
    Registration(
        "face-enhancement",
        "predictors.models.face_enhancement.predictor:FaceEnhancementPredictor",
        "predictors.models.face_enhancement.demo:write",
        {"face-enhancement": "damo/cv_gpen_image-portrait-enhancement",
         "face-enhancement-hires": "damo/cv_gpen_image-portrait-enhancement-hires"},
    ),
    Registration(
        "visual-entailment",
        "predictors.models.visual_entailment.predictor:VisualEntailmentPredictor",
        "predictors.models.visual_entailment.demo:write",
        {"visual-entailment": "damo/ofa_visual-entailment_snli-ve_large_en"},
    ),
)

BY_NAME: Mapping[str, Registration] = {model.name: model for model in MODELS}
#: `predictors download` name -> ModelScope hub id
HUB_MODELS: Mapping[str, str] = {name: hub for model in MODELS for name, hub in model.hub_models.items()}
