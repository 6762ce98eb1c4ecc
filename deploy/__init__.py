"""Deployment helper for the docker-compose stack: the container healthcheck (``python -m deploy.healthcheck``,
run inside the backend image). The stack's one-shot set-up step is ``ls-acestep connect`` (ml_backend/studio/connect.py)."""
