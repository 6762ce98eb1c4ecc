"""Music analysis without a model: decode audio (``audio``), then tempo, key, meter and sections (``music``)."""
