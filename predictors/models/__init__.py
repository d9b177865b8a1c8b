"""The models: `base.py` is the contract every model implements (`Predictor`: declarations, four steps and a
warm-up item); one predictor class per model (one module each), registered once in `catalog.py`, with its
on-disk layout in `layouts.py`; `registry.py` picks the class and configuration for a model directory.
`predictors.runtime.ModelRuntime` runs a predictor. Classes are imported lazily: importing
torch/ModelScope is slow."""
