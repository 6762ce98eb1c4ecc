"""Backend configuration, read from environment variables once per process (as in Label Studio's own backend
examples). Every variable is listed in the README's settings table and in `.env.example`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


class SettingsError(ValueError):
    """A setting has a value the backend cannot use; the message names the variable."""


ENGINES = ("transformers", "openai", "dsp")
SEGMENTATIONS = ("structure", "fixed")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_WINDOW_SECONDS = 30.0  # Qwen2-Audio's encoder sees at most 30 s


@dataclass(frozen=True)
class Settings:
    # Label Studio connection (media download, posting predictions from the queue worker)
    label_studio_url: str = ""  # LABEL_STUDIO_URL
    label_studio_api_key: str = ""  # LABEL_STUDIO_API_KEY: legacy token or personal access token
    local_files_document_root: str = ""  # LOCAL_FILES_DOCUMENT_ROOT
    # HTTP
    basic_auth_user: str = ""  # BASIC_AUTH_USER
    basic_auth_pass: str = ""  # BASIC_AUTH_PASS
    # Storage
    model_dir: Path = field(default_factory=lambda: Path("./model_dir"))  # MODEL_DIR: cache, queue
    # Engine
    engine: str = "transformers"  # ENGINE: transformers | openai | dsp
    model_id: str = "Qwen/Qwen2-Audio-7B-Instruct"  # MODEL_ID: hub id or local folder
    device: str = "auto"  # DEVICE: auto | cpu | cuda | cuda:N
    batch_size: int = 4  # BATCH_SIZE: windows per generate() call
    max_new_tokens: int = 384  # MAX_NEW_TOKENS
    temperature: float = 0.0  # TEMPERATURE: 0 = greedy
    top_p: float = 1.0  # TOP_P
    analysis_prompt: str = ""  # ANALYSIS_PROMPT: empty = the built-in prompt
    openai_base_url: str = "http://localhost:8000/v1"  # OPENAI_BASE_URL
    openai_api_key: str = "EMPTY"  # OPENAI_API_KEY
    max_concurrency: int = 4  # MAX_CONCURRENCY: requests in flight (openai engine)
    request_timeout: float = 120.0  # REQUEST_TIMEOUT: seconds per model request (openai engine)
    max_retries: int = 3  # MAX_RETRIES: retries with backoff (openai engine)
    # Segmentation
    segmentation: str = "structure"  # SEGMENTATION: structure | fixed
    segment_seconds: float = 30.0  # SEGMENT_SECONDS: fixed window length, at most 30
    overlap_seconds: float = 2.0  # OVERLAP_SECONDS: overlap of fixed windows
    # Media
    fetch_timeout: float = 30.0  # FETCH_TIMEOUT: seconds to download one audio file
    # Pre-labeling queue
    queue_url: str = ""  # QUEUE_URL: empty = SQLite in MODEL_DIR; redis://host:6379/0 to share work
    max_attempts: int = 3  # MAX_ATTEMPTS: tries per queued task before it is reported failed
    queue_workers: int = 1  # QUEUE_WORKERS: worker threads per backend process; 0 = only enqueue
    log_level: str = "INFO"  # LOG_LEVEL

    @classmethod
    def from_env(cls) -> "Settings":
        """Read every setting from the environment; raise SettingsError naming a bad variable."""
        s = cls(
            label_studio_url=_env("LABEL_STUDIO_URL").rstrip("/"),
            label_studio_api_key=_env("LABEL_STUDIO_API_KEY"),
            local_files_document_root=_env("LOCAL_FILES_DOCUMENT_ROOT"),
            basic_auth_user=_env("BASIC_AUTH_USER"),
            basic_auth_pass=_env("BASIC_AUTH_PASS"),
            model_dir=Path(_env("MODEL_DIR", "./model_dir")),
            engine=_env("ENGINE", "transformers").lower(),
            model_id=_env("MODEL_ID", cls.model_id),
            device=_env("DEVICE", "auto").lower(),
            batch_size=_env_int("BATCH_SIZE", 4),
            max_new_tokens=_env_int("MAX_NEW_TOKENS", 384),
            temperature=_env_float("TEMPERATURE", 0.0),
            top_p=_env_float("TOP_P", 1.0),
            analysis_prompt=os.environ.get("ANALYSIS_PROMPT", ""),
            openai_base_url=_env("OPENAI_BASE_URL", cls.openai_base_url).rstrip("/"),
            openai_api_key=_env("OPENAI_API_KEY", cls.openai_api_key),
            max_concurrency=_env_int("MAX_CONCURRENCY", 4),
            request_timeout=_env_float("REQUEST_TIMEOUT", 120.0),
            max_retries=_env_int("MAX_RETRIES", 3),
            segmentation=_env("SEGMENTATION", "structure").lower(),
            segment_seconds=_env_float("SEGMENT_SECONDS", 30.0),
            overlap_seconds=_env_float("OVERLAP_SECONDS", 2.0),
            fetch_timeout=_env_float("FETCH_TIMEOUT", 30.0),
            queue_url=_env("QUEUE_URL"),
            max_attempts=_env_int("MAX_ATTEMPTS", 3),
            queue_workers=_env_int("QUEUE_WORKERS", 1),
            log_level=_env("LOG_LEVEL", "INFO").upper(),
        )
        s.check()
        return s

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise SettingsError(f"ENGINE={self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.segmentation not in SEGMENTATIONS:
            raise SettingsError(f"SEGMENTATION={self.segmentation!r}: use one of {', '.join(SEGMENTATIONS)}")
        if not 1.0 <= self.segment_seconds <= MAX_WINDOW_SECONDS:
            raise SettingsError(f"SEGMENT_SECONDS={self.segment_seconds}: use 1 to {MAX_WINDOW_SECONDS:g} "
                                "(Qwen2-Audio's encoder sees at most 30 s)")
        if not 0.0 <= self.overlap_seconds < self.segment_seconds / 2:
            raise SettingsError(f"OVERLAP_SECONDS={self.overlap_seconds}: use 0 to less than half of SEGMENT_SECONDS")
        if self.batch_size < 1 or self.max_concurrency < 1:
            raise SettingsError("BATCH_SIZE and MAX_CONCURRENCY must be at least 1")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise SettingsError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise SettingsError(f"DEVICE={self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        minimums = {"MAX_NEW_TOKENS": (self.max_new_tokens, 1), "MAX_ATTEMPTS": (self.max_attempts, 1),
                    "MAX_RETRIES": (self.max_retries, 0), "QUEUE_WORKERS": (self.queue_workers, 0),
                    "TEMPERATURE": (self.temperature, 0.0)}
        for name, (value, least) in minimums.items():
            if value < least:
                raise SettingsError(f"{name}={value}: use {least} or more")
        for name, value in (("REQUEST_TIMEOUT", self.request_timeout), ("FETCH_TIMEOUT", self.fetch_timeout)):
            if value <= 0:
                raise SettingsError(f"{name}={value}: use a number of seconds above 0")
        if not 0.0 < self.top_p <= 1.0:
            raise SettingsError(f"TOP_P={self.top_p}: use a number above 0 and at most 1")


DEFAULT_PORT = 9090


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn (and ``ls-acestep serve``) runs the app; not part of the model's settings."""

    port: int = DEFAULT_PORT  # PORT
    workers: int = 1  # WORKERS: one per GPU, each worker holds its own copy of the model
    threads: int = 8  # THREADS: /health and /setup answer while a /predict runs

    @classmethod
    def from_env(cls) -> "ServerSettings":
        """Read PORT, WORKERS and THREADS; raise SettingsError naming a bad one."""
        s = cls(port=_env_int("PORT", DEFAULT_PORT), workers=_env_int("WORKERS", 1),
                threads=_env_int("THREADS", 8))
        if not 1 <= s.port <= 65535:
            raise SettingsError(f"PORT={s.port}: use 1 to 65535")
        if s.workers < 1 or s.threads < 1:
            raise SettingsError("WORKERS and THREADS must be at least 1")
        return s


# Environment variable names, for documentation checks (the README table and .env.example list them all).
ENV_VARS = tuple(f.name.upper() for cls in (Settings, ServerSettings) for f in fields(cls)) + ("HF_HOME",)
