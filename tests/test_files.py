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


def test_private_mode_even_over_a_leftover_temp_file(tmp_path):
    target = tmp_path / "up.json"
    leftover = tmp_path / f".up.json.{os.getpid()}.tmp"
    leftover.write_text("stale")
    leftover.chmod(0o644)
    atomic_write(target, b"{}", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"{}" and not leftover.exists()
