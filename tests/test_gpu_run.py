"""bench/gpu_run.py, the one-command GPU run, exercised on the CPU: the bundle is prepared from a real
(rendered) song with the backend's analysis and packing, then described with the tiny random Qwen2-Audio through
the same code path the GPU run takes at BATCH_SIZE 1, 4 and 8; the full-size model is checked on the meta device."""

from __future__ import annotations

import json

import pytest


def test_prepare_and_run_with_the_tiny_model(tmp_path, song_files):
    from bench import gpu_run

    bundle = tmp_path / "bundle"
    plan = gpu_run.main(["prepare", "--songs", str(song_files[".wav"]), "--bundle", str(bundle)])
    (song,) = plan["songs"]
    assert song["windows"] and all(w["end"] - w["start"] <= 30.0 for w in song["windows"])
    assert (bundle / song["audio"]).is_file()
    out = tmp_path / "out"
    report = gpu_run.main(["run", "--tiny", "--bundle", str(bundle), "--new-tokens", "2", "--no-lyrics",
                           "--out", str(out)])
    assert [row["batch_size"] for row in report["batch_sizes"]] == [1, 4, 8]
    for row in report["batch_sizes"]:
        (per_song,) = row["songs"]
        assert per_song["windows"] == len(song["windows"]) and per_song["seconds"] > 0
        # tokens per second of the unrounded time: within what rounding "seconds" to 0.01 s allows (a tiny run
        # takes a fraction of a second, where that rounding alone moves the quotient by several per cent)
        tokens = len(song["windows"]) * 2
        low, high = tokens / (row["seconds"] + 0.005), tokens / max(row["seconds"] - 0.005, 1e-9)
        assert low * 0.99 - 0.1 <= row["tokens_per_s"] <= high * 1.01 + 0.1
    assert json.loads((out / "gpu_run.json").read_text())["batch_sizes"] == report["batch_sizes"]
    assert report["lyrics"] == {"skipped": "--no-lyrics"}


def test_run_refuses_a_missing_bundle_and_a_cpu_without_tiny(tmp_path):
    from bench import gpu_run

    with pytest.raises(SystemExit, match="prepare"):
        gpu_run.main(["run", "--tiny", "--bundle", str(tmp_path / "none"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no GPU"):
        gpu_run.main(["run", "--device", "cpu", "--bundle", str(tmp_path), "--out", str(tmp_path)])


def test_dry_run_builds_the_real_size_on_the_meta_device():
    from bench import gpu_run

    report = gpu_run.main(["run", "--dry-run"])
    assert 8.0 < report["parameters_billion"] < 8.8  # Qwen2-Audio-7B: 8.4 B parameters, 15.6 GiB in bf16
