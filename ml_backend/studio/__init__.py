"""Label Studio operations: connect a project, backend and webhook (``connect``), run everything on one machine (``up``)."""
