"""The HTTP server: Label Studio's ML protocol (``app``) and ``ls-acestep serve`` (``cli``); gunicorn's entry is ml_backend/_wsgi.py."""
