"""The models, and the framework they plug into.

Framework: `base.py` is the contract every model implements (`Predictor`: declarations, four steps and a
warm-up item), `catalog.py` registers each model once, `registry.py` picks the class and configuration
for a model directory, `demo.py` writes a demo model repository, `classification.py` is what the two
classifiers share. One folder per model (`general_recognition/`, `image_classification/`,
`face_enhancement/`, `visual_entailment/`): its `predictor.py`, its directory's `layout.py` and its
`demo.py` writer. `predictors.runtime.ModelRuntime` runs a predictor. Classes are imported lazily:
importing torch/ModelScope is slow."""
