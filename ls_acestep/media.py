"""Where a task's audio lives: turn the reference in ``task.data.audio`` into a readable local file.

Label Studio writes several shapes of reference into task data; each is resolved here, first from local copies
(``media_root``, ``document_root``), then by downloading from Label Studio or the URL itself:

- ``/data/upload/<project>/<8 hex>-<name>`` (or ``/storage-data/uploaded/?filepath=upload/...``): files uploaded
  through the UI (``<media_root>/upload/...`` on disk);
- ``/data/local-files/?d=<relative path>``: Local Files storage (``<document_root>/<relative path>``);
- ``http(s)://...``: downloaded as is (the Label Studio token is only sent to Label Studio's own host);
- ``s3://``, ``gs://``, ``azure-blob://``: through Label Studio's ``/tasks/<id>/presign/`` endpoint.

Task data is untrusted (anyone who can import tasks writes it), so:

- local files are read only through those two Label Studio shapes and only inside their root (symlinks and
  ``..`` resolved); absolute paths and ``file://`` references are refused with a message;
- URLs on loopback, link-local and private addresses are refused (``url_policy``), checked on the address each
  redirect hop actually resolves to and connected to that very address, except Label Studio's own host and the
  hosts or networks in ``allowed_hosts``; ``hosts_only`` allows nothing else at all;
- a download has one deadline for connecting and every byte (``timeout``) and a size cap (``max_bytes``); the
  partial file (``.part-*``) is removed when it fails and by ``remove_stale_parts`` at start-up;
- the download cache is bounded (``cache_bytes``, least recently used out first); file locks make several
  processes share it: one download per reference, eviction one process at a time.

Label Studio percent-encodes non-ASCII file names in task data while the files on disk keep their raw names, so
paths are percent-decoded before they are looked up on disk. Used by the converter and the backend alike.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, unquote, urljoin, urlsplit

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
_CHUNK_BYTES = 1 << 16  # bytes per read: small enough that the size cap is checked often
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
PART_PREFIX = ".part-"  # a download in progress; removed on failure and at start-up when no process holds it
LOCK_DIR = ".locks"  # per-reference download locks and the eviction lock, inside the cache folder
_LOCK_POLL_SECONDS = 0.05  # how often a waiter looks whether another process's download of the same file ended
# A download used this recently is not evicted: it may be waiting to be decoded (a large /predict request decodes
# its songs one after the other, minutes after downloading them all).
IN_USE_SECONDS = 300.0
MB = 1 << 20
DEFAULT_MAX_BYTES = 1024 * MB  # MAX_DOWNLOAD_MB's default: a long lossless song is ~0.5 GB
LOCAL_REFUSAL = ("local files are read only as Label Studio /data/local-files/?d=<path> references under "
                 "LOCAL_FILES_DOCUMENT_ROOT (--document-root) or as uploads; import the file into Label Studio or "
                 "put it under the document root")


class MediaError(Exception):
    """An audio reference cannot be resolved; the message names the reference (and task) and what to do."""


@dataclass
class MediaSource:
    """Where audio may come from, and the limits on fetching it. Local copies win over downloads."""

    ls_url: str = ""  # Label Studio base URL, e.g. http://localhost:8080 (its host is always allowed)
    ls_token: str = ""  # legacy token or personal access token
    media_root: Path | None = None  # a copy of Label Studio's media folder (holds upload/<project>/<file>)
    document_root: Path | None = None  # LOCAL_FILES_DOCUMENT_ROOT
    cache_dir: Path | None = None  # downloads land here; default: <tmp>/ls-acestep-media
    timeout: float = 30.0  # seconds for one whole download: connect, redirects and every byte
    max_bytes: int = DEFAULT_MAX_BYTES  # bytes one download may hold
    cache_bytes: int | None = None  # bytes of downloads kept in cache_dir (None: unbounded)
    allowed_hosts: tuple[str, ...] = ()  # host names or networks (10.0.0.0/8) fetched even when private
    hosts_only: bool = False  # fetch only from Label Studio's host and allowed_hosts


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
    """``root / relative`` unless it lands outside ``root`` once ``..`` and symlinks are resolved (a symlink in
    the document root pointing at /etc is refused like ``../../etc``)."""
    parts = [p for p in PurePosixPath(relative).parts if p not in ("/", "")]
    if any(p == ".." for p in parts) or not parts:
        return None
    candidate = Path(root).joinpath(*parts)
    try:
        real_root = Path(root).resolve()
        real = candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return candidate if real.is_relative_to(real_root) else None


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
    read with what ``source`` offers, or must not be read at all (a path outside Label Studio's shapes)."""
    ref = (ref or "").strip()
    who = _who(ref, task_id)
    if not ref:
        raise MediaError(f"{who}: the task has no audio reference in its data")
    scheme = urlsplit(ref).scheme.lower()
    if scheme in CLOUD_SCHEMES:
        return _locate_cloud(ref, source, task_id, who)
    path = _ls_path(ref, source.ls_url.rstrip("/"))
    if path.startswith("/data/upload/") or path.startswith("/storage-data/uploaded"):
        return _locate_upload(ref, path, source, who)
    if path.startswith("/data/local-files"):
        return _locate_local_files(ref, path, source, who)
    if scheme in ("http", "https"):
        return Location(ref, url=ref, name=unquote(PurePosixPath(urlsplit(ref).path).name))
    if scheme == "file" or (scheme == "" and not ref.startswith(("/data/", "/storage-data/"))) or \
            (len(scheme) == 1 and ref[1:3] in (":\\", ":/")):  # a Windows drive letter parses as a scheme
        raise MediaError(f"{who}: not read: {LOCAL_REFUSAL}")
    raise MediaError(f"{who}: not a reference this tool understands (upload, local-files, http(s), s3, gs or "
                     "azure-blob)")


def _locate_cloud(ref: str, source: MediaSource, task_id, who: str) -> Location:
    """``s3://``, ``gs://``, ``azure-blob://``: Label Studio's presign endpoint redirects to the storage."""
    ls_url = source.ls_url.rstrip("/")
    if task_id is None or not ls_url:
        raise MediaError(f"{who}: cloud storage files are fetched through Label Studio's presign endpoint; "
                         "pass --ls-url and --ls-token (and a task id)")
    fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
    name = unquote(PurePosixPath(urlsplit(ref).path).name)
    return Location(ref, url=f"{ls_url}/tasks/{task_id}/presign/?fileuri={fileuri}", name=name)


def _locate_upload(ref: str, path: str, source: MediaSource, who: str) -> Location:
    """``/data/upload/<project>/<file>`` or ``/storage-data/uploaded/?filepath=upload/...``: under media_root, or
    downloaded from Label Studio."""
    if path.startswith("/data/upload/"):
        relative = unquote(urlsplit(path).path)[len("/data/"):]  # upload/<project>/<file>
    else:
        relative = (parse_qs(urlsplit(path).query).get("filepath") or [""])[-1]
    return _on_disk_or_download(ref, path, relative, source.media_root, source, who, "--media-root", (
        "is an upload", "a copy of Label Studio's media folder, holding upload/<project>/<file>"))


def _locate_local_files(ref: str, path: str, source: MediaSource, who: str) -> Location:
    """``/data/local-files/?d=<path>``: under document_root, or downloaded from Label Studio."""
    values = parse_qs(urlsplit(path).query, keep_blank_values=True).get("d") or [""]
    relative = values[-1]  # parse_qs has percent-decoded it once, as Label Studio does
    if not relative:
        raise MediaError(f"{who}: a local-files reference without ?d=<path>; fix the task data")
    return _on_disk_or_download(ref, path, relative, source.document_root, source, who, "--document-root", (
        "is a Local Files storage file", "LOCAL_FILES_DOCUMENT_ROOT"))


def _on_disk_or_download(ref: str, path: str, relative: str, root: Path | None, source: MediaSource, who: str,
                         option: str, words: tuple[str, str]) -> Location:
    """The file ``relative`` under ``root`` when it is there (and inside it), else Label Studio's URL for
    ``path``; MediaError naming ``option`` when neither is possible."""
    ls_url = source.ls_url.rstrip("/")
    if root:
        candidate = _safe_join(root, relative)
        if candidate is None and not ls_url:
            raise MediaError(f"{who}: the path leaves {option} {root} ({'..' if '..' in relative else 'a symlink'}"
                             "); fix the task data")
        if candidate is not None and candidate.is_file():
            return Location(ref, path=candidate)
    if ls_url:
        return Location(ref, url=ls_url + path, name=PurePosixPath(relative).name)
    what, hint = words
    where = f"not found under {option} {root}" if root else what
    raise MediaError(f"{who} {where}; pass {option} ({hint}) or --ls-url and --ls-token to download it")


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


# --- where a download may go -------------------------------------------------------------------------------------

def parse_allowed_hosts(text: str) -> tuple[str, ...]:
    """``ALLOWED_MEDIA_HOSTS`` (comma or space separated host names, addresses or networks) as a tuple; raises
    ValueError naming a network that does not parse."""
    items = tuple(x.strip().lower() for x in text.replace(",", " ").split() if x.strip())
    for item in items:
        if "/" in item:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"ALLOWED_MEDIA_HOSTS: {item!r} is not a network (use e.g. 10.0.0.0/8)") from None
    return items


def _netloc_key(url: str) -> tuple[str, int]:
    """(host, port) with the scheme's default port: what "the same server" means for the token and the policy."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port or (443 if parts.scheme.lower() == "https" else 80)


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, link-local (cloud metadata at 169.254.169.254), private, shared, reserved or unspecified: what
    Label Studio's own SSRF defence blocks, plus IPv4 addresses hidden in IPv6 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if mapped is not None:
            return _is_internal(mapped)
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
            or address.is_multicast or address.is_unspecified or not address.is_global)


def _addresses(host: str, port: int, who: str, seconds: float) -> list[str]:
    """The addresses ``host`` resolves to (all of them are checked: a name may map to a public and a private
    address at once), within ``seconds``: the resolver has no timeout of its own, so it runs in a helper thread
    that is abandoned when the deadline passes."""
    answer: list = []

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            answer.append(exc)

    thread = threading.Thread(target=resolve, name="resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    if not answer:
        raise MediaError(f"{who}: resolving {host!r} took longer than FETCH_TIMEOUT (Timeout); check the DNS")
    if isinstance(answer[0], Exception):
        raise MediaError(f"{who}: the host {host!r} cannot be resolved ({answer[0]}); check the URL")
    return list(dict.fromkeys(info[4][0] for info in answer[0]))


def url_policy(url: str, source: MediaSource, who: str, seconds: float = 30.0) -> list[str]:
    """The addresses to connect to for ``url`` after checking that it is allowed (see the module docstring);
    raises MediaError saying why not. ``seconds`` bounds the name resolution."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise MediaError(f"{who}: {_display(url)}: only http and https URLs are fetched")
    host, port = _netloc_key(url)
    addresses = _addresses(host, port, who, seconds)
    if not addresses:
        raise MediaError(f"{who}: the host {host!r} has no address")
    if source.ls_url and _netloc_key(source.ls_url) == (host, port):
        return addresses
    allowed = tuple(source.allowed_hosts)
    if host in allowed:
        return addresses
    networks = [ipaddress.ip_network(a, strict=False) for a in allowed if _is_network(a)]
    parsed = [ipaddress.ip_address(a.split("%")[0]) for a in addresses]
    if networks and all(any(ip in net for net in networks) for ip in parsed):
        return addresses
    if source.hosts_only:
        raise MediaError(f"{who}: {_display(url)} is not Label Studio's host nor in ALLOWED_MEDIA_HOSTS, and "
                         "MEDIA_HOSTS_ONLY=true; add the host there or import the file into Label Studio")
    internal = [str(ip) for ip in parsed if _is_internal(ip)]
    if internal:
        raise MediaError(f"{who}: {_display(url)} resolves to the internal address {internal[0]} (loopback, "
                         "link-local or private), which is not fetched; add the host to ALLOWED_MEDIA_HOSTS if "
                         "it really serves your audio")
    return addresses


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


# --- the download cache ------------------------------------------------------------------------------------------

_NAME_BYTES = 150  # of a cached file's readable name: with the hash, well under the 255-byte name limit


def _cache_path(cache_dir: Path, ref: str, name: str) -> Path:
    """A stable file name per reference: a short hash (distinct refs never collide) plus the readable name, cut
    to _NAME_BYTES of UTF-8 (100 Japanese characters are 300 bytes) with its extension kept."""
    digest = hashlib.sha1(ref.encode()).hexdigest()[:12]
    name = name.replace("/", "_").replace("\\", "_").lstrip(".") or "audio"
    if len(name.encode()) > _NAME_BYTES:
        suffix = PurePosixPath(name).suffix[:16]
        stem = name[: len(name) - len(suffix)].encode()[: _NAME_BYTES - len(suffix.encode())]
        name = stem.decode("utf-8", "ignore") + suffix
    return cache_dir / f"{digest}__{name}"


def _usable(target: Path) -> bool:
    try:
        return target.is_file() and target.stat().st_size > 0
    except OSError:
        return False


def _touch(path: Path) -> None:
    """Mark a cache entry as just used (eviction goes by modification time: atime is often not kept)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _lock_path(target: Path) -> Path:
    return target.parent / LOCK_DIR / (target.name.split("__", 1)[0] + ".lock")


@contextmanager
def _file_lock(path: Path, deadline: float | None, what: str):
    """An exclusive ``flock`` on ``path`` (shared by threads and processes alike: each holder opens its own file
    description); waits until ``deadline`` (monotonic seconds, None: no limit) and raises MediaError after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise MediaError(f"{what}: another download of the same file is still running; "
                                     "try again later") from None
                time.sleep(_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the lock


_SWEPT: set[str] = set()  # cache folders whose stale .part files this process has removed
_SWEPT_LOCK = threading.Lock()


def _sweep_once(cache_dir: Path) -> None:
    """``remove_stale_parts`` the first time this process downloads into ``cache_dir`` (the converter and
    ``preannotate`` have no start-up hook of their own)."""
    key = str(Path(cache_dir).resolve())
    with _SWEPT_LOCK:
        if key in _SWEPT:
            return
        _SWEPT.add(key)
    remove_stale_parts(cache_dir)


def remove_stale_parts(cache_dir: Path) -> int:
    """Delete partial downloads that no process is writing (a crash or kill left them). Returns how many. Safe
    while other processes download: a live ``.part`` file is locked by its writer and is kept."""
    removed = 0
    try:
        entries = list(Path(cache_dir).glob(PART_PREFIX + "*"))
    except OSError:
        return 0
    for part in entries:
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            part.unlink()
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def evict(cache_dir: Path, max_bytes: int | None, keep: Path | None = None,
          in_use_seconds: float = IN_USE_SECONDS) -> int:
    """Delete least recently used downloads until ``cache_dir`` holds at most ``max_bytes``. ``keep`` and files
    used in the last ``in_use_seconds`` stay (they may be about to be decoded), so the cache can stay over its
    bound by what is in use. One process evicts at a time. Returns the bytes freed."""
    if max_bytes is None:
        return 0
    freed = 0
    recent = time.time() - in_use_seconds
    with _file_lock(Path(cache_dir) / LOCK_DIR / "evict.lock", None, "cache"):
        entries = []
        for entry in Path(cache_dir).iterdir():
            if entry.name.startswith(".") or entry == keep:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, entry))
        total = sum(size for _, size, _ in entries)
        if keep is not None:
            try:
                total += keep.stat().st_size
            except OSError:
                pass
        for mtime, size, entry in sorted(entries, key=lambda e: e[0]):
            if total <= max_bytes or mtime > recent:
                break
            try:
                entry.unlink()
                _lock_path(entry).unlink(missing_ok=True)  # the lock only dedups downloads; a new one is made
            except OSError:
                continue
            total -= size
            freed += size
    return freed


def resolve_audio(ref: str, source: MediaSource, task_id: int | None = None, client=None) -> Path:
    """A local, readable file holding the audio of ``ref``; downloads land in ``source.cache_dir`` and are reused.
    ``client`` (from make_client) may be passed to reuse one token exchange across many tasks. Concurrent calls
    for one reference (threads or processes) download it once; the others wait for it within the deadline."""
    location = locate(ref, source, task_id)
    if location.path is not None:
        return location.path
    cache_dir = Path(source.cache_dir or Path(tempfile.gettempdir()) / "ls-acestep-media")
    target = _cache_path(cache_dir, location.ref, location.name)
    if _usable(target):
        _touch(target)
        return target
    deadline = time.monotonic() + source.timeout
    who = _who(ref, task_id)
    headers = {}
    if source.ls_url and source.ls_token:
        if client is None and _netloc_key(location.url) == _netloc_key(source.ls_url):
            client = make_client(source.ls_url, source.ls_token, source.timeout)
        if client is not None:
            headers["Authorization"] = auth_header(client)
    _sweep_once(cache_dir)
    with _file_lock(_lock_path(target), deadline, who):
        if _usable(target):  # another thread or process fetched it while this one waited
            _touch(target)
            return target
        download(location.url, target, headers, source, who, deadline)
    try:
        evict(cache_dir, source.cache_bytes, keep=target)
    except OSError as exc:  # the cache stays over its bound until the next download; the song is fine
        import logging

        logging.getLogger(__name__).warning("download cache %s not trimmed: %s", cache_dir, exc)
    return target


# --- one download ------------------------------------------------------------------------------------------------

class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to the address the policy checked (not a second DNS answer), with the URL's host
    name for the Host header and the TLS certificate."""

    def __init__(self, host: str, port: int, addresses: list[str], tls: bool, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._addresses, self._tls = addresses, tls

    def connect(self) -> None:
        sock, error = None, None
        for address in self._addresses:  # e.g. localhost: ::1 first, the server on 127.0.0.1
            try:
                sock = socket.create_connection((address, self.port), self.timeout)
                break
            except OSError as exc:
                error = exc
        if sock is None:
            raise error or OSError("no address")
        self.raw_sock = sock  # kept for the watchdog: http.client hands self.sock over to a closing response
        if self._tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
            self.raw_sock = sock
        self.sock = sock


class _Watchdog:
    """Shuts a connection's socket at the deadline, so that no read (headers or body, however slowly trickled)
    outlives it."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = getattr(self._conn, "raw_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def download(url: str, target: Path, auth_headers: dict, source: MediaSource, who: str,
             deadline: float | None = None) -> None:
    """Stream ``url`` into ``target`` atomically (a locked ``.part`` file in the same folder, then rename), within
    ``deadline`` (monotonic seconds; default ``source.timeout`` from now) and ``source.max_bytes``. Redirects are
    followed by hand: each hop is checked by ``url_policy`` and ``auth_headers`` go only to Label Studio's host
    (a presigned S3 URL never sees the Label Studio token)."""
    deadline = deadline if deadline is not None else time.monotonic() + source.timeout
    target.parent.mkdir(parents=True, exist_ok=True)
    trusted = _netloc_key(source.ls_url) if source.ls_url else None
    for _ in range(_MAX_REDIRECTS + 1):
        headers = dict(auth_headers) if trusted and _netloc_key(url) == trusted else {}
        location = _fetch(url, target, headers, source, who, deadline)
        if location is None:
            return
        url = urljoin(url, location)
    raise MediaError(f"{who}: too many redirects from {_display(url)}")


def _remaining(deadline: float, url: str, who: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise MediaError(f"{who}: download from {_display(url)} did not finish within FETCH_TIMEOUT={timeout:g} s "
                         "(Timeout); check that the server is reachable and fast enough, or raise FETCH_TIMEOUT")
    return left


_URL_SAFE = "/%?&=+:;@!$'()*,[]~"  # kept as they are when a request path is percent-encoded (% too: once only)


def _fetch(url: str, target: Path, headers: dict, source: MediaSource, who: str, deadline: float) -> str | None:
    """One HTTP GET of ``url``: the redirect's Location, or None once the body is stored at ``target``."""
    left = _remaining(deadline, url, who, source.timeout)
    addresses = url_policy(url, source, who, left)
    parts = urlsplit(url)
    host, port = _netloc_key(url)
    conn = _PinnedConnection(host, port, addresses, parts.scheme.lower() == "https", timeout=left)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path = quote(path, safe=_URL_SAFE)  # a raw "あ" or space in task data: http.client sends ASCII only
    headers = {"User-Agent": "ls-acestep", "Accept-Encoding": "identity", **headers}
    response = None
    with _Watchdog(conn, left) as watchdog:
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            if response.status in _REDIRECTS and response.getheader("Location"):
                return response.getheader("Location")
            _check_status(response.status, url, who)
            _check_length_header(response, source.max_bytes, url, who)
            _store(response, target, source.max_bytes, url, who, lambda: watchdog.fired)
            return None
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired or isinstance(exc, TimeoutError):
                _remaining(-1.0, url, who, source.timeout)  # raises the deadline message
            if isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or conn.sock is None:
                raise MediaError(f"{who}: download from {_display(url)} failed ({exc.__class__.__name__}); "
                                 "check the URL and that the server is reachable") from None
            raise MediaError(f"{who}: download from {_display(url)} broke off ({exc.__class__.__name__}); "
                             "run again") from None
        finally:
            if response is not None:  # owns the socket when the server said Connection: close
                response.close()
            conn.close()


def _check_status(status: int, url: str, who: str) -> None:
    if status in (401, 403):
        raise MediaError(f"{who}: {_display(url)} answered {status}; check --ls-token "
                         "(and that it belongs to a user with access to the project)")
    if status != 200:
        raise MediaError(f"{who}: {_display(url)} answered HTTP {status}; check that the file still exists")


def _too_big(max_bytes: int, url: str, who: str) -> MediaError:
    return MediaError(f"{who}: {_display(url)} is larger than MAX_DOWNLOAD_MB={max_bytes / MB:g}; the download "
                      "was stopped (cut the file, or raise MAX_DOWNLOAD_MB)")


def _check_length_header(response, max_bytes: int, url: str, who: str) -> None:
    try:
        declared = int(response.getheader("Content-Length") or -1)
    except ValueError:
        declared = -1
    if declared > max_bytes:
        raise _too_big(max_bytes, url, who)


def _store(response, target: Path, max_bytes: int, url: str, who: str, expired) -> None:
    """Copy the body into a locked ``.part`` file, stopping past ``max_bytes``; rename it to ``target``. ``expired()``
    tells an end of stream caused by the deadline (the watchdog shut the socket) from the real end."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=PART_PREFIX)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # remove_stale_parts leaves a part alone while its writer holds this
        with os.fdopen(fd, "wb", closefd=False) as out:
            size = 0
            while True:
                chunk = response.read(_CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(max_bytes, url, who)
                out.write(chunk)
        if expired():
            raise TimeoutError("deadline")
        if response.length:  # http.client counts down Content-Length; bytes still owed: the stream broke off
            raise http.client.IncompleteRead(b"", response.length)
        if size == 0:
            raise MediaError(f"{who}: {_display(url)} sent an empty file")
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise MediaError(f"{who}: no space left in {target.parent} for the download; free space or lower "
                             "MEDIA_CACHE_MB") from None
        raise
    finally:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _display(url: str) -> str:
    """A URL without its query string (presigned URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
