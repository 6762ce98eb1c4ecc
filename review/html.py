"""Rendering the pages: Jinja2 templates from review/templates, autoescaped (every text in a page comes from
an export or a sidecar, i.e. from outside), written atomically."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from ls_acestep.files import atomic_write

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _number(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _percent(value, digits: int = 0) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def _mmss(seconds) -> str:
    """Seconds as m:ss."""
    if seconds is None:
        return "—"
    total = max(0, int(round(float(seconds))))
    return f"{total // 60}:{total % 60:02d}"


def _duration(seconds) -> str:
    """A long span of seconds as "12 h 05 min" (or "7 min" under an hour)."""
    minutes = int(round(float(seconds or 0) / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    env.filters["pct"] = _percent
    env.filters["mmss"] = _mmss
    env.filters["duration"] = _duration
    return env


def render(template: str, **context) -> str:
    """The page ``template`` filled with ``context`` (``generated_at`` is added)."""
    context.setdefault("generated_at", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return _environment().get_template(template).render(**context)


def write_page(path: Path, template: str, **context) -> Path:
    """Render ``template`` into ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render(template, **context).encode("utf-8"))
    return path
