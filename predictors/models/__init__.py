"""One predictor class per model (one module each), registered once in `catalog.py`; `registry.py` picks
the class and configuration for a model directory. Classes are imported lazily: importing torch/ModelScope
is slow."""
