"""From descriptions to Label Studio: regions and song fields merged (``merge``), result JSON for a label config (``predictions``), the prediction cache (``cache``)."""
