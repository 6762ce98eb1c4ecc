"""``ls-acestep serve``: run the backend for development (Flask's threaded server) or under gunicorn."""

from __future__ import annotations

import dataclasses
import os
import sys

import click


@click.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=None, show_default="$PORT or 9090", help="Port to listen on.")
@click.option("--debug", is_flag=True, help="Flask debug mode: reload on code changes, debug logging.")
@click.option("--gunicorn", "use_gunicorn", is_flag=True,
              help="Serve with gunicorn ($WORKERS processes of $THREADS threads), as in production.")
@click.option("--no-warm-up", is_flag=True, help="Load the model on the first /predict instead of at start-up.")
def serve_command(host: str, port: int | None, debug: bool, use_gunicorn: bool, no_warm_up: bool) -> None:
    """Run the Label Studio ML backend (settings from the environment; see the settings table in docs/backend.md)."""
    from ml_backend.settings import ServerSettings, SettingsError

    if port is None:
        try:
            port = ServerSettings.from_env().port
        except SettingsError as exc:
            raise click.ClickException(f"{exc} (see the settings table in docs/backend.md)") from None
    if use_gunicorn:
        args = [sys.executable, "-m", "gunicorn", "-c", "python:ml_backend._wsgi", "--bind", f"{host}:{port}"]
        os.execv(sys.executable, args)  # gunicorn replaces this process; its workers load the model after fork
    from ml_backend.server.app import create_app, start_prelabeling
    from ml_backend.model import get_model
    from ml_backend.settings import Settings

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"{exc} (see the settings table in docs/backend.md)") from None
    if debug:
        settings = dataclasses.replace(settings, log_level="DEBUG")
    app = create_app(settings)
    if not no_warm_up and not (debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true"):
        # In debug mode the reloader's parent process only watches files: warm up in the serving child.
        click.echo(f"loading the {settings.engine} engine ({settings.model_id}) ...", err=True)
        try:
            get_model(settings).load()
        except Exception as exc:
            raise click.ClickException(f"the model could not be loaded: {exc}") from None
    if not debug or os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        start_prelabeling(settings)
    app.run(host=host, port=port, debug=debug, threaded=True)
