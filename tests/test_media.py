"""ls_acestep.media: audio references resolved from local copies and real HTTP downloads (a local server stands in
for Label Studio and for a storage host), and the SDK client with both token shapes."""

from __future__ import annotations

import base64
import os
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import jwt
import pytest

from ls_acestep.media import MediaError, MediaSource, locate, make_client, resolve_audio

# The test servers listen on loopback, which task data may not reach by default (SSRF): these tests allow it.
LOOPBACK = ("127.0.0.1",)


class LocalServer:
    """A real HTTP server on 127.0.0.1 with scripted routes. ``routes[path]`` is a function
    ``(handler) -> (status, headers, body)``; every request is recorded as (method, path, headers)."""

    def __init__(self):
        self.routes: dict = {}
        self.requests: list[tuple[str, str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method):
                body = b""
                if method == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.body = body
                server.requests.append((method, self.path, dict(self.headers)))
                route = server.routes.get(urlsplit(self.path).path)
                status, headers, payload = route(self) if route else (404, {}, b"not found")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def file(self, path: str, data: bytes, token: str | None = None):
        """Serve ``data`` at ``path``; with ``token`` only to requests sending ``Authorization: <token>``."""

        def route(handler):
            if token is not None and handler.headers.get("Authorization") != token:
                return 401, {}, b'{"detail": "Authentication credentials were not provided."}'
            return 200, {"Content-Type": "audio/wav"}, data

        self.routes[path] = route

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ls_server():
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def other_server():
    server = LocalServer()
    yield server
    server.close()


def make_jwt(token_type: str, seconds: int = 3600) -> str:
    """A JWT shaped like Label Studio's personal access (refresh) and access tokens."""
    claims = {"token_type": token_type, "exp": int(time.time()) + seconds, "iat": int(time.time()),
              "jti": f"{token_type}-{time.time_ns()}", "user_id": 1}
    return jwt.encode(claims, "test-secret-that-is-long-enough-for-hs256", algorithm="HS256")


def serve_token_refresh(server: LocalServer, pat: str, access: str) -> None:
    def route(handler):
        if json.loads(handler.body or b"{}").get("refresh") != pat:
            return 401, {"Content-Type": "application/json"}, b'{"detail": "Token is invalid or expired"}'
        return 200, {"Content-Type": "application/json"}, json.dumps({"access": access}).encode()

    server.routes["/api/token/refresh/"] = route


# --- local copies ----------------------------------------------------------------------------------------------

def test_upload_found_under_media_root_with_percent_decoded_unicode_name(tmp_path, song_files):
    # Label Studio percent-encodes non-ASCII names in data.audio; on disk the name is raw.
    on_disk = tmp_path / "media" / "upload" / "3" / "0a1b2c3d-café ünïcode.flac"
    on_disk.parent.mkdir(parents=True)
    on_disk.write_bytes(song_files[".flac"].read_bytes())
    ref = "/data/upload/3/0a1b2c3d-caf%C3%A9%20%C3%BCn%C3%AFcode.flac"
    assert resolve_audio(ref, MediaSource(media_root=tmp_path / "media"), task_id=5) == on_disk


def test_missing_upload_names_the_task_and_what_to_pass(tmp_path):
    with pytest.raises(MediaError) as err:
        resolve_audio("/data/upload/1/deadbeef-gone.wav", MediaSource(media_root=tmp_path), task_id=42)
    message = str(err.value)
    assert "task 42" in message and "gone.wav" in message
    assert "--media-root" in message and "--ls-url" in message


def test_local_files_read_from_document_root(tmp_path):
    target = tmp_path / "root" / "albums" / "été.wav"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"RIFF")
    ref = "/data/local-files/?d=albums%2F%C3%A9t%C3%A9.wav"
    assert resolve_audio(ref, MediaSource(document_root=tmp_path / "root")) == target


def test_local_files_cannot_escape_the_document_root(tmp_path):
    (tmp_path / "secret.wav").write_bytes(b"x")
    (tmp_path / "root").mkdir()
    with pytest.raises(MediaError, match="--document-root"):
        resolve_audio("/data/local-files/?d=../secret.wav", MediaSource(document_root=tmp_path / "root"), 1)


def test_cloud_uri_needs_label_studio_and_a_task_id():
    with pytest.raises(MediaError, match="presign"):
        locate("s3://bucket/song.wav", MediaSource(), task_id=None)


def test_unknown_reference_shape_is_explained():
    with pytest.raises(MediaError, match="not a reference"):
        locate("/data/something-else/x.wav", MediaSource())
    with pytest.raises(MediaError, match="no audio reference"):
        locate("  ", MediaSource(), task_id=3)


# --- downloads -------------------------------------------------------------------------------------------------

def test_upload_downloaded_with_legacy_token_and_cached(tmp_path, ls_server, song_files):
    data = song_files[".wav"].read_bytes()
    ls_server.file("/data/upload/1/e799742c-song.wav", data, token="Token legacy-key")
    source = MediaSource(ls_url=ls_server.url, ls_token="legacy-key", cache_dir=tmp_path / "cache")
    path = resolve_audio("/data/upload/1/e799742c-song.wav", source, task_id=1)
    assert path.read_bytes() == data
    assert path.parent == tmp_path / "cache" and path.name.endswith("e799742c-song.wav")
    # The second call is served from the cache: no new request.
    count = len(ls_server.requests)
    assert resolve_audio("/data/upload/1/e799742c-song.wav", source, task_id=1) == path
    assert len(ls_server.requests) == count


def test_personal_access_token_is_exchanged_and_sent_as_bearer(tmp_path, ls_server):
    pat, access = make_jwt("refresh"), make_jwt("access", 300)
    serve_token_refresh(ls_server, pat, access)
    ls_server.file("/data/local-files/", b"audio-bytes", token=f"Bearer {access}")
    source = MediaSource(ls_url=ls_server.url, ls_token=pat, cache_dir=tmp_path)
    path = resolve_audio("/data/local-files/?d=music/a.wav", source, task_id=2)
    assert path.read_bytes() == b"audio-bytes"
    posted = [r for r in ls_server.requests if r[0] == "POST"]
    assert [r[1] for r in posted] == ["/api/token/refresh/"]
    # The PAT itself never travels as a bearer token.
    assert all(r[2].get("Authorization") != f"Bearer {pat}" for r in ls_server.requests)


@pytest.mark.parametrize("shape", ["legacy", "pat"])
def test_make_client_talks_to_label_studio_with_both_token_shapes(ls_server, shape):
    if shape == "legacy":
        token, expected = "0123456789abcdef", "Token 0123456789abcdef"
    else:
        token, access = make_jwt("refresh"), make_jwt("access", 300)
        serve_token_refresh(ls_server, token, access)
        expected = f"Bearer {access}"

    def whoami(handler):
        if handler.headers.get("Authorization") != expected:
            return 401, {"Content-Type": "application/json"}, b'{"detail": "no"}'
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"id": 1, "email": "admin@example.com", "username": "admin"}).encode()

    ls_server.routes["/api/current-user/whoami"] = whoami
    ls_server.routes["/api/current-user/whoami/"] = whoami
    user = make_client(ls_server.url, token).users.whoami()
    assert user.email == "admin@example.com"


def test_expired_personal_access_token_is_refused_clearly(ls_server):
    with pytest.raises(MediaError, match="token refused"):
        make_client(ls_server.url, make_jwt("refresh", seconds=-60))


def test_token_goes_only_to_label_studio_host(tmp_path, ls_server, other_server):
    other_server.file("/files/song.wav", b"public-audio")
    source = MediaSource(ls_url=ls_server.url, ls_token="legacy-key", cache_dir=tmp_path, allowed_hosts=LOOPBACK)
    path = resolve_audio(f"{other_server.url}/files/song.wav", source, task_id=3)
    assert path.read_bytes() == b"public-audio"
    assert "Authorization" not in other_server.requests[0][2]
    assert ls_server.requests == []  # no token exchange or request to Label Studio for a foreign URL


def test_cloud_uri_through_presign_redirect_without_leaking_the_token(tmp_path, ls_server, other_server):
    other_server.file("/bucket/dir/song.wav", b"s3-audio")
    uri = "s3://bucket/dir/song.wav"

    def presign(handler):
        if handler.headers.get("Authorization") != "Token legacy-key":
            return 401, {}, b""
        fileuri = parse_qs(urlsplit(handler.path).query)["fileuri"][0]
        assert base64.urlsafe_b64decode(fileuri).decode() == uri
        return 303, {"Location": f"{other_server.url}/bucket/dir/song.wav?X-Amz-Signature=abc"}, b""

    ls_server.routes["/tasks/9/presign/"] = presign
    source = MediaSource(ls_url=ls_server.url, ls_token="legacy-key", cache_dir=tmp_path, allowed_hosts=LOOPBACK)
    path = resolve_audio(uri, source, task_id=9)
    assert path.read_bytes() == b"s3-audio" and path.name.endswith("song.wav")
    assert "Authorization" not in other_server.requests[0][2]


def test_absolute_label_studio_url_gets_the_token(tmp_path, ls_server):
    ls_server.file("/data/upload/2/abcdef12-x.wav", b"abs", token="Token k")
    source = MediaSource(ls_url=ls_server.url, ls_token="k", cache_dir=tmp_path)
    assert resolve_audio(f"{ls_server.url}/data/upload/2/abcdef12-x.wav", source, 1).read_bytes() == b"abs"


def test_http_errors_become_clear_messages_and_leave_no_partial_file(tmp_path, ls_server):
    source = MediaSource(ls_url=ls_server.url, ls_token="bad", cache_dir=tmp_path)
    ls_server.file("/data/upload/1/abcdef12-a.wav", b"x", token="Token good")
    with pytest.raises(MediaError, match=r"task 4: .*401.*--ls-token"):
        resolve_audio("/data/upload/1/abcdef12-a.wav", source, task_id=4)
    with pytest.raises(MediaError, match="HTTP 404"):
        resolve_audio(f"{ls_server.url}/missing.wav", source, task_id=4)
    assert [p.name for p in tmp_path.iterdir()] == [".locks"]  # no partial file, only the lock folder


def test_slow_server_times_out_with_a_message(tmp_path, ls_server):
    def slow(handler):
        time.sleep(1.5)
        return 200, {}, b"late"

    ls_server.routes["/slow.wav"] = slow
    source = MediaSource(cache_dir=tmp_path, timeout=0.3, allowed_hosts=LOOPBACK)
    with pytest.raises(MediaError, match="Timeout"):
        resolve_audio(f"{ls_server.url}/slow.wav", source, task_id=8)


def test_unreachable_server_is_reported(tmp_path):
    with pytest.raises(MediaError, match="reachable"):
        resolve_audio("http://127.0.0.1:9/x.wav", MediaSource(cache_dir=tmp_path, timeout=1, allowed_hosts=LOOPBACK),
                      task_id=1)


def test_storage_proxy_form_of_an_upload(tmp_path):
    on_disk = tmp_path / "upload" / "4" / "abcdef12-x.wav"
    on_disk.parent.mkdir(parents=True)
    on_disk.write_bytes(b"RIFF")
    ref = "/storage-data/uploaded/?filepath=upload/4/abcdef12-x.wav"
    assert resolve_audio(ref, MediaSource(media_root=tmp_path), task_id=1) == on_disk


# --- untrusted references: local paths, SSRF, deadlines, caps, the bounded cache ---------------------------------

@pytest.fixture
def hostile():
    from tests.security.hostile import HostileServer

    server = HostileServer(trickle_seconds=0.2)
    yield server
    server.close()


@pytest.mark.parametrize("ref", ["/etc/passwd", "file:///etc/passwd", "songs/a.wav", "../a.wav",
                                 "C:\\music\\a.wav", "file://localhost/etc/hostname"])
def test_paths_outside_label_studio_shapes_are_refused(tmp_path, ref):
    (tmp_path / "songs").mkdir()
    (tmp_path / "songs" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(MediaError, match="/data/local-files/.*LOCAL_FILES_DOCUMENT_ROOT") as err:
        resolve_audio(ref, MediaSource(document_root=tmp_path, media_root=tmp_path), task_id=7)
    assert "task 7" in str(err.value)


def test_symlink_out_of_the_document_root_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    (tmp_path / "root" / "link.wav").symlink_to(tmp_path / "secret.wav")
    (tmp_path / "root" / "dir").symlink_to(tmp_path)
    for ref in ("/data/local-files/?d=link.wav", "/data/local-files/?d=dir/secret.wav"):
        with pytest.raises(MediaError, match="leaves --document-root"):
            resolve_audio(ref, MediaSource(document_root=tmp_path / "root"), task_id=1)
    # a symlink that stays inside the root is fine
    (tmp_path / "root" / "real.wav").write_bytes(b"RIFF")
    (tmp_path / "root" / "inside.wav").symlink_to(tmp_path / "root" / "real.wav")
    assert resolve_audio("/data/local-files/?d=inside.wav", MediaSource(document_root=tmp_path / "root")).name \
        == "inside.wav"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a.wav", "http://localhost:9/a.wav", "http://[::1]:9/a.wav",
                                 "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/a.wav",
                                 "http://192.168.0.1/a.wav", "http://[::ffff:127.0.0.1]:9/a.wav",
                                 "http://0.0.0.0:9/a.wav", "http://100.64.0.1/a.wav"])
def test_internal_addresses_are_refused_before_any_connection(tmp_path, url):
    with pytest.raises(MediaError, match="internal address") as err:
        resolve_audio(url, MediaSource(cache_dir=tmp_path), task_id=3)
    assert "task 3" in str(err.value) and "ALLOWED_MEDIA_HOSTS" in str(err.value)


def test_redirect_into_loopback_is_refused_on_the_resolved_hop(tmp_path, hostile, other_server):
    """The first hop is allowed by name (localhost); its redirect to 127.0.0.1 is checked on its own address."""
    other_server.file("/secret", b"internal")
    start = hostile.url.replace("127.0.0.1", "localhost") + f"/redirect?to={other_server.url}/secret"
    with pytest.raises(MediaError, match="internal address 127.0.0.1"):
        resolve_audio(start, MediaSource(cache_dir=tmp_path, allowed_hosts=("localhost",)), task_id=1)
    assert hostile.paths() == ["/redirect"] and other_server.requests == []


def test_allowed_networks_and_hosts_only(tmp_path, hostile):
    url = hostile.serve("a.wav", b"RIFF-data")
    assert resolve_audio(url, MediaSource(cache_dir=tmp_path, allowed_hosts=("127.0.0.0/8",))).read_bytes() \
        == b"RIFF-data"
    # MEDIA_HOSTS_ONLY: a public address is refused too, before any connection
    with pytest.raises(MediaError, match="MEDIA_HOSTS_ONLY"):
        resolve_audio("http://93.184.216.34/a.wav", MediaSource(cache_dir=tmp_path, hosts_only=True), task_id=2)
    # ... while Label Studio's own host stays allowed
    source = MediaSource(ls_url=hostile.url, cache_dir=tmp_path / "ls", hosts_only=True)
    assert resolve_audio(url, source).read_bytes() == b"RIFF-data"


@pytest.mark.parametrize("route", ["/trickle", "/drip"])  # with a Content-Length, and until the connection closes
def test_trickling_server_is_cut_off_at_the_deadline(tmp_path, hostile, route):
    started = time.monotonic()
    with pytest.raises(MediaError, match="FETCH_TIMEOUT=1 s") as err:
        resolve_audio(f"{hostile.url}{route}", MediaSource(cache_dir=tmp_path, timeout=1.0,
                                                           allowed_hosts=LOOPBACK), task_id=5)
    assert "task 5" in str(err.value)
    assert time.monotonic() - started < 20  # the server would trickle for ever, one byte per 0.2 s
    assert hostile.left[route].wait(5)  # the connection was closed, not left open
    assert not list(tmp_path.glob(".part-*"))


def test_endless_stream_stops_at_the_size_cap(tmp_path, hostile):
    source = MediaSource(cache_dir=tmp_path, max_bytes=1 << 20, allowed_hosts=LOOPBACK)
    with pytest.raises(MediaError, match="MAX_DOWNLOAD_MB=1"):
        resolve_audio(f"{hostile.url}/endless", source, task_id=6)
    assert hostile.left["/endless"].wait(5)
    assert hostile.sent["/endless"] < 64 << 20  # stopped near the cap (socket buffers hold a few MB)
    assert not list(tmp_path.glob(".part-*"))
    with pytest.raises(MediaError, match="MAX_DOWNLOAD_MB"):  # refused from its Content-Length alone
        resolve_audio(f"{hostile.url}/huge", source, task_id=6)


def test_stale_partial_downloads_are_removed_but_live_ones_kept(tmp_path):
    import fcntl
    import os

    from ls_acestep.media import remove_stale_parts

    (tmp_path / ".part-dead").write_bytes(b"x" * 100)
    live = tmp_path / ".part-live"
    live.write_bytes(b"y")
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_stale_parts(tmp_path) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == [".part-live"]
    finally:
        os.close(fd)


def test_the_first_download_of_a_process_sweeps_stale_parts(tmp_path, hostile):
    """The converter and preannotate have no start-up hook: their first download into a cache folder sweeps it."""
    (tmp_path / ".part-crashed").write_bytes(b"x")
    resolve_audio(hostile.serve("a.wav", b"RIFF"), MediaSource(cache_dir=tmp_path, allowed_hosts=LOOPBACK))
    assert not list(tmp_path.glob(".part-*"))


def test_cache_is_bounded_least_recently_used_out_first(tmp_path, hostile):
    urls = [hostile.serve(f"s{i}.wav", bytes([i]) * 1000) for i in range(4)]
    source = MediaSource(cache_dir=tmp_path, cache_bytes=2500, allowed_hosts=LOOPBACK)
    first = resolve_audio(urls[0], source)
    second = resolve_audio(urls[1], source)
    os.utime(second, (1, 1))  # used long ago
    os.utime(first, (2, 2))
    assert resolve_audio(urls[0], source) == first  # a hit marks it as just used
    resolve_audio(urls[2], source)  # 3000 bytes > 2500: the least recently used (second) goes
    kept = sorted(p.name.split("__")[1] for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert kept == ["s0.wav", "s2.wav"]
    count = len(hostile.requests)
    assert resolve_audio(urls[0], source) == first and len(hostile.requests) == count
    # files used in the last minutes stay even over the bound (they may be waiting to be decoded)
    resolve_audio(urls[3], source)
    kept = sorted(p.name.split("__")[1] for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert kept == ["s0.wav", "s2.wav", "s3.wav"]


def test_concurrent_requests_for_one_reference_download_it_once(tmp_path, ls_server, song_files):
    def slow_file(handler):
        time.sleep(0.3)
        return 200, {}, b"audio-bytes"

    ls_server.routes["/data/upload/1/aa-x.wav"] = slow_file
    source = MediaSource(ls_url=ls_server.url, cache_dir=tmp_path)
    results, threads = [], []
    for _ in range(5):
        thread = threading.Thread(target=lambda: results.append(
            resolve_audio("/data/upload/1/aa-x.wav", source, task_id=1).read_bytes()))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"audio-bytes"] * 5
    assert len(ls_server.requests) == 1


def test_a_resolver_that_hangs_counts_against_the_deadline(tmp_path, monkeypatch):
    """No slow DNS server can run here: the resolver call itself is made to hang."""
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **kw: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(MediaError, match="resolving 'media.example' took longer than FETCH_TIMEOUT"):
        resolve_audio("http://media.example/a.wav", MediaSource(cache_dir=tmp_path, timeout=0.5), task_id=1)
    assert time.monotonic() - started < 10


def test_non_ascii_and_long_file_names_download(tmp_path, ls_server):
    """Label Studio stores a reference percent-encoded or raw (local-files paths); a file name of 100 Japanese
    characters is 300 bytes, more than a file name may hold: both download, into a name that fits."""
    name = "あ" * 100 + " song.wav"
    ls_server.file("/data/upload/1/" + quote(name), b"RIFF-data", token="Token k")
    source = MediaSource(ls_url=ls_server.url, ls_token="k", cache_dir=tmp_path)
    for ref in ("/data/upload/1/" + quote(name), "/data/upload/1/" + name):
        path = resolve_audio(ref, source, task_id=1)
        assert path.read_bytes() == b"RIFF-data" and path.name.endswith("あ.wav") and len(path.name.encode()) <= 255
