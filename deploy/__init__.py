"""Deployment helpers for the docker-compose stack: the container healthcheck and the one-shot step that connects
the backend to a Label Studio project. Both run inside the backend image (``python -m deploy.<module>``)."""
