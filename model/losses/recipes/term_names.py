"""Names of the recipes' loss terms: keys of the logged per-term values (``loss/<name>``), of
the loss state_dict (``losses.<name>.…``) and of the terms' optimiser state in checkpoints."""

from __future__ import annotations

CROSS_ENTROPY = "cross_entropy"
TRIPLET = "triplet"
CENTER = "center"
CENTROID_TRIPLET = "centroid_triplet"
HPL = "hpl"
