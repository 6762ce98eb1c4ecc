"""The ``ls-acestep`` command: one click group over the converter, the backend and the tooling around them."""

__version__ = "0.1.0"
