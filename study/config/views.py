"""The scoring views and regions of the test evaluation, and the (view, region) pairs the study names.

"composed" is the paper's protocol: a mask model pastes the input background through its predicted
mask. "decoder" is what the network itself produced: its decoder output and the input, both masked
to the ground-truth face, so no input or background pixel enters any metric (not even through an
SSIM window or an LPIPS receptive field). Torch-free: analysis and config read these too.
"""
from __future__ import annotations

COMPOSED = "composed"
DECODER = "decoder"
FULL = "full"
FACE = "face"
VIEWS: tuple[str, ...] = (DECODER, COMPOSED)
REGIONS: tuple[str, ...] = (FULL, FACE)

# The network's own output on the face: the headline, and the champion's default criterion.
HEADLINE = (DECODER, FACE)
# The paper's protocol: the composed output over the full image.
PAPER = (COMPOSED, FULL)
# (view, region) pairs every final run is scored on, in the order the score files hold them.
SCORED_PAIRS: tuple[tuple[str, str], ...] = (PAPER, (COMPOSED, FACE), HEADLINE)
# The report's order: the headline first, then the paper's protocol.
PAIR_ORDER: tuple[tuple[str, str], ...] = (HEADLINE, (COMPOSED, FACE), PAPER, (DECODER, FULL))
# The pairs whose numbers go on the hypothesis runs as metrics: the headline and the paper's protocol,
# about a dozen charts in MLflow's chart view; every pair is in the report's tables.
PARENT_METRIC_PAIRS: tuple[tuple[str, str], ...] = (HEADLINE, PAPER)
LEGACY_VIEW = COMPOSED  # score files written before the decoder view existed hold composed scores
REGION_TITLES = {FULL: "full output", FACE: "face region (ground-truth mask)"}
VIEW_TITLES = {DECODER: "decoder view", COMPOSED: "composed view"}
