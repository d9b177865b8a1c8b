"""The pipeline's Python checks, run from the repository root as modules (``python -m ci.smoke_client``,
``python -m ci.gpu_smoke``) so that they import `ci` and `devtools` without touching ``sys.path``."""
