"""One predictor class per model. Classes are imported lazily: importing torch/ModelScope is slow."""
