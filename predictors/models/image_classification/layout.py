"""The on-disk layout of a classifier directory (your own TorchScript / `torch.export` model): its
file names. Imports neither KServe nor the serving code (the demo writer uses it).
"""

from __future__ import annotations

SCRIPTED_FILE = "model.pt"
EXPORTED_FILE = "model.pt2"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.json"
