"""Music analysis without a model: decode audio (``audio``), then ``music.analyze``: the pulse (``tempo``), key
(``key``), meter and downbeats (``meter``), sections and repetition letters (``structure``), and section labels
from the form (``labels``); ``frames`` holds the shared frame grid."""
