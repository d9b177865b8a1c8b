"""Release safety: `predictors canary-analysis` compares a model's canary with its stable track in Prometheus."""
