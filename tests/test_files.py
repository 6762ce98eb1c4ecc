"""Atomic writes shared by the converter and `ls-acestep up`."""

import os
import stat

import pytest

from ls_acestep.files import atomic_write


def test_replaces_content_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "song.json"
    target.write_text("old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["song.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "song.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["song.json"]


def test_private_mode_whatever_the_umask(tmp_path):
    target = tmp_path / "up.json"
    old = os.umask(0)
    try:
        atomic_write(target, b"{}", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"{}" and os.listdir(tmp_path) == ["up.json"]


def test_default_mode_is_what_the_umask_leaves(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


@pytest.mark.timeout(30)
def test_read_inside_refuses_a_fifo_and_a_device_without_hanging(tmp_path):
    from ls_acestep.files import OutsideFolderError, read_inside

    (tmp_path / "plain.json").write_bytes(b"{}")
    assert read_inside(tmp_path / "plain.json", tmp_path) == b"{}"
    os.mkfifo(tmp_path / "fifo.json")  # opening it for reading would wait for a writer for ever
    (tmp_path / "zero.json").symlink_to("/dev/zero")  # reading it would never end
    for name in ("fifo.json", "zero.json"):
        with pytest.raises(OSError, match="not a regular file") as err:
            read_inside(tmp_path / name, "/")  # "/": the link stays inside, so only the file's kind refuses it
        assert not isinstance(err.value, OutsideFolderError)
    with pytest.raises(OutsideFolderError):
        read_inside(tmp_path / "zero.json", tmp_path)
