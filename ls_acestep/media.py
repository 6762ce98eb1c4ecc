"""Where a task's audio lives: turn the reference in ``task.data.audio`` into a readable local file.

Label Studio writes several shapes of reference into task data; each is resolved here, first from local copies
(``media_root``, ``document_root``), then by downloading from Label Studio or the URL itself:

- ``/data/upload/<project>/<8 hex>-<name>`` (or ``/storage-data/uploaded/?filepath=upload/...``): files uploaded
  through the UI (``<media_root>/upload/...`` on disk);
- ``/data/local-files/?d=<relative path>``: Local Files storage (``<document_root>/<relative path>``);
- ``http(s)://...``: downloaded as is (the Label Studio token is only sent to Label Studio's own host);
- ``s3://``, ``gs://``, ``azure-blob://``: through Label Studio's ``/tasks/<id>/presign/`` endpoint.

Label Studio percent-encodes non-ASCII file names in task data while the files on disk keep their raw names, so
paths are percent-decoded before they are looked up on disk. Used by the converter and the backend alike.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
_CHUNK_BYTES = 1 << 20
_MAX_REDIRECTS = 5


class MediaError(Exception):
    """An audio reference cannot be resolved; the message names the reference (and task) and what to do."""


@dataclass
class MediaSource:
    """Where audio may come from. Local copies win over downloads."""

    ls_url: str = ""  # Label Studio base URL, e.g. http://localhost:8080
    ls_token: str = ""  # legacy token or personal access token
    media_root: Path | None = None  # a copy of Label Studio's media folder (holds upload/<project>/<file>)
    document_root: Path | None = None  # LOCAL_FILES_DOCUMENT_ROOT
    cache_dir: Path | None = None  # downloads land here; default: <tmp>/ls-acestep-media
    timeout: float = 30.0  # seconds per HTTP request (connect and each read)


@dataclass(frozen=True)
class Location:
    """Where one reference resolves to: a local file (``path``) or a URL to download (``url``)."""

    ref: str
    path: Path | None = None
    url: str = ""
    name: str = ""  # file name to keep for a download (percent-decoded)


def _who(ref: str, task_id: int | None) -> str:
    return f"task {task_id}: audio {ref!r}" if task_id is not None else f"audio {ref!r}"


def _safe_join(root: Path, relative: str) -> Path | None:
    """``root / relative`` unless ``relative`` escapes ``root`` (``..``, absolute parts)."""
    parts = [p for p in PurePosixPath(relative).parts if p not in ("/", "")]
    if any(p == ".." for p in parts) or not parts:
        return None
    return Path(root).joinpath(*parts)


def _ls_path(ref: str, ls_url: str) -> str:
    """The path+query of ``ref`` when it points into Label Studio (relative, or an absolute URL on ``ls_url``'s
    host); "" otherwise."""
    if ref.startswith("/"):
        return ref
    if ref.startswith("upload/"):
        return "/data/" + ref
    parts = urlsplit(ref)
    if ls_url and parts.scheme in ("http", "https") and parts.netloc == urlsplit(ls_url).netloc:
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return ""


def locate(ref: str, source: MediaSource, task_id: int | None = None) -> Location:
    """Decide, without touching the network, where ``ref`` is read from. Raises MediaError when it cannot be
    read with what ``source`` offers."""
    ref = (ref or "").strip()
    who = _who(ref, task_id)
    if not ref:
        raise MediaError(f"{who}: the task has no audio reference in its data")
    ls_url = source.ls_url.rstrip("/")
    scheme = urlsplit(ref).scheme.lower()

    if scheme in CLOUD_SCHEMES:
        if task_id is None or not ls_url:
            raise MediaError(f"{who}: cloud storage files are fetched through Label Studio's presign endpoint; "
                             "pass --ls-url and --ls-token (and a task id)")
        fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
        name = unquote(PurePosixPath(urlsplit(ref).path).name)
        return Location(ref, url=f"{ls_url}/tasks/{task_id}/presign/?fileuri={fileuri}", name=name)

    if scheme == "file":
        return _local_file(Path(unquote(urlsplit(ref).path)), ref, who)

    path = _ls_path(ref, ls_url)
    if path.startswith("/data/upload/") or path.startswith("/storage-data/uploaded"):
        if path.startswith("/data/upload/"):
            relative = unquote(urlsplit(path).path)[len("/data/"):]  # upload/<project>/<file>
        else:  # the storage proxy form: /storage-data/uploaded/?filepath=upload/<project>/<file>
            relative = (parse_qs(urlsplit(path).query).get("filepath") or [""])[-1]
        if source.media_root:
            candidate = _safe_join(source.media_root, relative)
            if candidate and candidate.is_file():
                return Location(ref, path=candidate)
        if ls_url:
            return Location(ref, url=ls_url + path, name=PurePosixPath(relative).name)
        where = f"not found under --media-root {source.media_root}" if source.media_root else "is an upload"
        raise MediaError(f"{who} {where}; pass --media-root (a copy of Label Studio's media folder, holding "
                         "upload/<project>/<file>) or --ls-url and --ls-token to download it")

    if path.startswith("/data/local-files"):
        values = parse_qs(urlsplit(path).query, keep_blank_values=True).get("d") or [""]
        relative = values[-1]  # parse_qs has percent-decoded it once, as Label Studio does
        if not relative:
            raise MediaError(f"{who}: a local-files reference without ?d=<path>; fix the task data")
        if source.document_root:
            candidate = _safe_join(source.document_root, relative)
            if candidate and candidate.is_file():
                return Location(ref, path=candidate)
        if ls_url:
            return Location(ref, url=ls_url + path, name=PurePosixPath(relative).name)
        where = (f"not found under --document-root {source.document_root}" if source.document_root
                 else "is a Local Files storage file")
        raise MediaError(f"{who} {where}; pass --document-root (LOCAL_FILES_DOCUMENT_ROOT) or --ls-url and "
                         "--ls-token to download it")

    if scheme in ("http", "https"):
        return Location(ref, url=ref, name=unquote(PurePosixPath(urlsplit(ref).path).name))

    if scheme == "" and not ref.startswith("/data/"):
        return _local_file(Path(ref), ref, who)
    raise MediaError(f"{who}: not a reference this tool understands (upload, local-files, http(s), s3, gs, "
                     "azure-blob or a local path)")


def _local_file(path: Path, ref: str, who: str) -> Location:
    for candidate in (path, Path(unquote(str(path)))):
        if candidate.is_file():
            return Location(ref, path=candidate)
    raise MediaError(f"{who}: no such file; check the path or the task data")


def make_client(url: str, token: str, timeout: float = 30.0):
    """A ``label_studio_sdk.LabelStudio`` client for ``url``. ``token`` may be a legacy token (sent as
    ``Token <key>``) or a personal access token, a JWT refresh token that the SDK exchanges at
    ``/api/token/refresh/`` for short-lived access tokens (sent as ``Bearer <access>``)."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    if not url or not token:
        raise MediaError("a Label Studio URL and token are needed: pass --ls-url and --ls-token "
                         "(or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
    try:
        return LabelStudio(base_url=url.rstrip("/"), api_key=token, timeout=timeout)
    except ApiError as exc:  # the SDK checks a JWT's expiry up front
        raise MediaError(f"Label Studio token refused ({_api_detail(exc)}); create a new access token in "
                         "Label Studio (Account & Settings)") from None


def _api_detail(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return f"HTTP {getattr(exc, 'status_code', '?')}"


def auth_header(client) -> str:
    """The ``Authorization`` value the SDK client sends (refreshing a personal access token when needed)."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        # The SDK keeps the legacy/JWT decision and the access-token cache in its client wrapper.
        return client._client_wrapper.get_headers()["Authorization"]
    except ApiError as exc:
        raise MediaError(f"Label Studio token refused ({_api_detail(exc)}); check --ls-token") from None
    except Exception as exc:  # network failure during the token exchange
        raise MediaError(f"cannot reach Label Studio to exchange the token: {exc}") from None


def _cache_path(cache_dir: Path, ref: str, name: str) -> Path:
    """A stable file name per reference: a short hash (distinct refs never collide) plus the readable name."""
    digest = hashlib.sha1(ref.encode()).hexdigest()[:12]
    name = name.replace("/", "_").replace("\\", "_") or "audio"
    return cache_dir / f"{digest}__{name}"


def resolve_audio(ref: str, source: MediaSource, task_id: int | None = None, client=None) -> Path:
    """A local, readable file holding the audio of ``ref``; downloads land in ``source.cache_dir`` and are reused.
    ``client`` (from make_client) may be passed to reuse one token exchange across many tasks."""
    location = locate(ref, source, task_id)
    if location.path is not None:
        return location.path
    cache_dir = Path(source.cache_dir or Path(tempfile.gettempdir()) / "ls-acestep-media")
    target = _cache_path(cache_dir, location.ref, location.name)
    if target.is_file() and target.stat().st_size > 0:
        return target
    headers = {}
    ls_netloc = urlsplit(source.ls_url).netloc if source.ls_url else ""
    if ls_netloc and source.ls_token:
        if client is None and urlsplit(location.url).netloc == ls_netloc:
            client = make_client(source.ls_url, source.ls_token, source.timeout)
        if client is not None:
            headers["Authorization"] = auth_header(client)
    download(location.url, target, headers, ls_netloc, source.timeout, _who(ref, task_id))
    return target


def download(url: str, target: Path, auth_headers: dict, trusted_netloc: str, timeout: float, who: str) -> None:
    """Stream ``url`` into ``target`` atomically (temp file in the same folder, then rename). Redirects are
    followed by hand so that ``auth_headers`` go only to ``trusted_netloc`` (a presigned S3 URL never sees the
    Label Studio token)."""
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_MAX_REDIRECTS + 1):
        headers = dict(auth_headers) if trusted_netloc and urlsplit(url).netloc == trusted_netloc else {}
        try:
            response = requests.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise MediaError(f"{who}: download from {_display(url)} failed ({exc.__class__.__name__}); "
                             "check the URL and that the server is reachable") from None
        with response:
            if response.is_redirect and response.headers.get("location"):
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code in (401, 403):
                raise MediaError(f"{who}: {_display(url)} answered {response.status_code}; check --ls-token "
                                 "(and that it belongs to a user with access to the project)")
            if response.status_code != 200:
                raise MediaError(f"{who}: {_display(url)} answered HTTP {response.status_code}; check that the "
                                 "file still exists")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(_CHUNK_BYTES):
                        out.write(chunk)
                if os.path.getsize(tmp) == 0:
                    raise MediaError(f"{who}: {_display(url)} sent an empty file")
                os.replace(tmp, target)
            except requests.RequestException as exc:
                raise MediaError(f"{who}: download from {_display(url)} broke off ({exc.__class__.__name__}); "
                                 "run again") from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
    raise MediaError(f"{who}: too many redirects from {_display(url)}")


def _display(url: str) -> str:
    """A URL without its query string (presigned URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
