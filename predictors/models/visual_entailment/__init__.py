"""The visual-entailment model: `predictor` (the `Predictor`), `demo` (its demo directory writer). Nothing is
imported here: each part is imported where it is needed."""
