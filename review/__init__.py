"""Looking at the work instead of reading it: ``ls-acestep review`` (how far people moved each field of each model's
predictions, and whether the prediction score foresaw it) and ``ls-acestep report`` (what a converted dataset
holds: counts, distributions, timelines, loudness, near-duplicates, validate's problems).

Both write a JSON file and one self-contained HTML page (plots embedded as images, no scripts or styles fetched
from the network).
"""
