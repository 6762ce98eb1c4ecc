"""Container healthcheck: ``python -m deploy.healthcheck`` exits 0 when the backend's ``/health`` answers 200.

Standard library plus ml_backend.studio.connect's basic_auth_header (that module loads only click), so it stays fast and
works even when the model's imports (torch, transformers) are broken. Reads the same variables as the
backend: PORT, and BASIC_AUTH_USER/BASIC_AUTH_PASS when the backend requires basic auth.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from ml_backend.studio.connect import basic_auth_header


def health_url(port: str) -> str:
    """URL of the backend's /health on this container's loopback interface."""
    return f"http://127.0.0.1:{port}/health"


def check(url: str, headers: dict[str, str], timeout: float = 5.0) -> str | None:
    """GET url; None when it answers 200, else a one-line reason."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main() -> int:
    port = os.environ.get("PORT", "").strip() or "9090"
    user = os.environ.get("BASIC_AUTH_USER", "").strip()
    password = os.environ.get("BASIC_AUTH_PASS", "").strip()
    problem = check(health_url(port), basic_auth_header(user, password))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
