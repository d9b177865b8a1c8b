"""The general-recognition model: `predictor` (the `Predictor`), `layout` (its directory's files), `demo`
(its demo directory writer). Nothing is imported here: each part is imported where it is needed."""
