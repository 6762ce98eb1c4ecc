"""Backend configuration, read from environment variables once per process (as in Label Studio's own backend
examples). Each setting is one dataclass field: its variable is the field's name upper-cased, its parser follows
the field's type and its limits are the field's metadata (``setting(...)``). Every variable is listed in the
settings table of docs/backend.md and in `.env.example` (tests keep the three in step)."""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path


class SettingsError(ValueError):
    """A setting has a value the backend cannot use; the message names the variable."""


ENGINES = ("transformers", "openai", "dsp")
LYRICS_ENGINES = ("none", "whisper", "openai")  # ml_backend/lyrics/engines
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setting(default=MISSING, *, factory=MISSING, choices: tuple = (), least=None, above=None, most=None,
            case: str = "", url: bool = False, keep_spaces: bool = False, hint: str = ""):
    """A settings field with its limits. ``least``/``most`` are inclusive bounds, ``above`` an exclusive lower
    bound; ``case`` ("lower"/"upper") normalises text before ``choices`` are checked; ``url`` drops a trailing
    slash; ``keep_spaces`` keeps the value exactly as given (a prompt); ``hint`` ends the error message."""
    meta = {"choices": choices, "least": least, "above": above, "most": most, "case": case, "url": url,
            "keep_spaces": keep_spaces, "hint": hint}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _parse(f, raw: str):
    """One variable's text as the field's type; raises SettingsError naming the variable."""
    name, kind, meta = f.name.upper(), str(f.type), f.metadata
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    if kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r}: use true or false")
    if kind == "Path":
        return Path(raw)
    value = raw if meta.get("keep_spaces") else raw.strip()
    if meta.get("case") == "lower":
        value = value.lower()
    elif meta.get("case") == "upper":
        value = value.upper()
    return value.rstrip("/") if meta.get("url") else value


def _check_limits(f, value) -> None:
    """The field's own limits (metadata); raises SettingsError naming the variable."""
    name, meta = f.name.upper(), f.metadata
    hint = f" ({meta['hint']})" if meta.get("hint") else ""
    if meta.get("choices") and value not in meta["choices"]:
        raise SettingsError(f"{name}={value!r}: use one of {', '.join(meta['choices'])}{hint}")
    least, above, most = meta.get("least"), meta.get("above"), meta.get("most")
    if above is not None and not value > above:
        raise SettingsError(f"{name}={value}: use a number above {above:g}{hint}")
    if least is not None and value < least:
        raise SettingsError(f"{name}={value}: use {least} or more{hint}")
    if most is not None and value > most:
        raise SettingsError(f"{name}={value}: use at most {most}{hint}")


def _from_env(cls):
    """An instance of the settings dataclass ``cls`` from the environment: unset or empty variables keep the
    field's default; each given value is parsed and checked against the field's limits."""
    values = {}
    for f in fields(cls):
        raw = os.environ.get(f.name.upper(), "")
        if not (raw if f.metadata.get("keep_spaces") else raw.strip()):
            continue
        values[f.name] = _parse(f, raw)
        _check_limits(f, values[f.name])
    return cls(**values)


@dataclass(frozen=True)
class Settings:
    # Label Studio connection (media download, posting predictions from the queue worker)
    label_studio_url: str = setting("", url=True)
    label_studio_api_key: str = setting("")  # legacy token or personal access token
    local_files_document_root: str = setting("")
    # HTTP
    basic_auth_user: str = setting("")
    basic_auth_pass: str = setting("")
    # Storage: prediction cache, downloads, queue
    model_dir: Path = setting(factory=lambda: Path("./model_dir"))
    # Engine
    engine: str = setting("transformers", choices=ENGINES, case="lower")
    model_id: str = setting("Qwen/Qwen2-Audio-7B-Instruct")  # hub id or local folder
    device: str = setting("auto", case="lower")  # auto | cpu | cuda | cuda:N | mps
    batch_size: int = setting(4, least=1)  # windows per generate() call
    max_new_tokens: int = setting(384, least=1)
    temperature: float = setting(0.0, least=0.0)  # 0 = greedy
    top_p: float = setting(1.0, above=0.0, most=1.0)
    analysis_prompt: str = setting("", keep_spaces=True)  # empty = the built-in prompt
    openai_base_url: str = setting("http://localhost:8000/v1", url=True)
    openai_api_key: str = setting("EMPTY")
    max_concurrency: int = setting(4, least=1)  # requests in flight (openai engine)
    request_timeout: float = setting(120.0, above=0.0)  # seconds per model request (openai engine)
    max_retries: int = setting(3, least=0)  # retries with backoff (openai engine)
    # Lyrics (ml_backend/lyrics/, docs/lyrics.md); the openai lyrics engine shares the timeouts, retries and
    # concurrency above. Guard defaults are Whisper's own thresholds.
    lyrics_engine: str = setting("none", choices=LYRICS_ENGINES, case="lower")
    lyrics_model_id: str = setting("openai/whisper-large-v3-turbo")  # Whisper id/folder, or the server's model name
    lyrics_base_url: str = setting("", url=True)  # openai lyrics engine: ends before /audio/transcriptions
    lyrics_api_key: str = setting("EMPTY")
    lyrics_pause_seconds: float = setting(0.8, above=0.0)  # a longer gap between words starts a new line
    lyrics_no_speech_threshold: float = setting(0.6, least=0.0, most=1.0)  # with a low log-prob: silence
    lyrics_logprob_threshold: float = setting(-1.0)  # mean token log-probability below this is doubtful
    lyrics_compression_ratio_threshold: float = setting(2.4, above=0.0)  # above: a repetition loop
    lyrics_max_repeats: int = setting(6, least=1)  # a word group repeated more often back to back is a loop
    lyrics_min_voice_seconds: float = setting(1.0, least=0.0)  # voice a region needs to keep words; 0 = off
    # Segmentation (the values and the 30 s limit live with the windowing code: ml_backend/describe/windows.py)
    segmentation: str = setting("structure", case="lower")  # structure | fixed
    segment_seconds: float = setting(30.0)  # fixed window length, at most 30
    overlap_seconds: float = setting(2.0)  # overlap of fixed windows
    pack_windows: bool = setting(True)  # several neighbouring regions in one model window (describe/windows.py)
    # Media
    fetch_timeout: float = setting(30.0, above=0.0)  # seconds for one whole download (connect + all bytes)
    max_download_mb: float = setting(1024.0, above=0.0)  # MB one download may hold; the stream stops there
    media_cache_mb: float = setting(20480.0, least=0.0)  # MB of downloads kept in MODEL_DIR/media (LRU out first)
    max_audio_seconds: float = setting(3600.0, above=0.0)  # longer songs are refused before they are decoded
    allowed_media_hosts: str = setting("")  # comma-separated hosts or networks fetched even when private
    media_hosts_only: bool = setting(False)  # true: fetch only from Label Studio's host and ALLOWED_MEDIA_HOSTS
    max_request_mb: float = setting(32.0, above=0.0)  # request bodies above this get HTTP 413
    # Pre-labeling queue
    queue_url: str = setting("")  # empty = SQLite in MODEL_DIR; redis://host:6379/0 to share work
    max_attempts: int = setting(3, least=1)  # tries per queued task before it is reported failed
    queue_workers: int = setting(1, least=0)  # worker threads per backend process; 0 = only enqueue
    log_level: str = setting("INFO", choices=LOG_LEVELS, case="upper")

    @classmethod
    def from_env(cls) -> "Settings":
        """Read every setting from the environment; raise SettingsError naming a bad variable."""
        s = _from_env(cls)
        s.check()
        return s

    def check(self) -> None:
        """Rules that tie several settings together or need the windowing code's limits."""
        from ml_backend.describe.windows import MAX_WINDOW_SECONDS, SEGMENTATIONS

        if self.segmentation not in SEGMENTATIONS:
            raise SettingsError(f"SEGMENTATION={self.segmentation!r}: use one of {', '.join(SEGMENTATIONS)}")
        if not 1.0 <= self.segment_seconds <= MAX_WINDOW_SECONDS:
            raise SettingsError(f"SEGMENT_SECONDS={self.segment_seconds}: use 1 to {MAX_WINDOW_SECONDS:g} "
                                "(Qwen2-Audio's encoder sees at most 30 s)")
        if not 0.0 <= self.overlap_seconds < self.segment_seconds / 2:
            raise SettingsError(f"OVERLAP_SECONDS={self.overlap_seconds}: use 0 to less than half of SEGMENT_SECONDS")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise SettingsError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
        from ls_acestep.media import parse_allowed_hosts

        try:
            parse_allowed_hosts(self.allowed_media_hosts)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if self.lyrics_engine == "openai" and not self.lyrics_base_url:
            raise SettingsError("LYRICS_ENGINE=openai needs LYRICS_BASE_URL (the transcription server, e.g. "
                                "http://whisper:8000/v1)")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise SettingsError(f"DEVICE={self.device!r}: use auto, cpu, cuda or cuda:N")


DEFAULT_PORT = 9090


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn (and ``ls-acestep serve``) runs the app; not part of the model's settings."""

    port: int = setting(DEFAULT_PORT, least=1, most=65535)
    workers: int = setting(1, least=1)  # one per GPU, each worker holds its own copy of the model
    threads: int = setting(8, least=1)  # /health and /setup answer while a /predict runs

    @classmethod
    def from_env(cls) -> "ServerSettings":
        """Read PORT, WORKERS and THREADS; raise SettingsError naming a bad one."""
        return _from_env(cls)


# Environment variable names, for documentation checks (the settings table and .env.example list them all).
ENV_VARS = tuple(f.name.upper() for cls in (Settings, ServerSettings) for f in fields(cls)) + ("HF_HOME",)
