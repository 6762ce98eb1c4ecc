"""What `ls-acestep up` and `ls-acestep preannotate` choose on a user's machine when told nothing: the engine (no
7B download on a machine without a GPU), the per-user data folder (nothing left in the current folder), and a
Label Studio command line without the password or the token."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from ml_backend.prelabel.preannotate import run_settings
from ml_backend.settings import Settings
from ml_backend.studio import up


@pytest.fixture
def gpu(monkeypatch):
    """Set whether torch sees a GPU: ``gpu(False)``."""
    import torch

    def set_gpu(present: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: present)

    return set_gpu


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    """An empty current folder and a per-user data home under tmp_path; returns the folder `up` should use."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for name in ("ENGINE", "MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "xdg" / "ls-acestep"


def test_without_engine_a_cpu_machine_gets_the_dsp_engine(gpu, monkeypatch):
    monkeypatch.delenv("ENGINE", raising=False)
    gpu(False)
    engine, why = up.choose_engine("auto")
    assert engine == "dsp" and "no GPU" in why and "--engine" in why
    gpu(True)
    assert up.choose_engine("auto")[0] == "transformers"
    monkeypatch.setenv("ENGINE", "openai")
    assert up.choose_engine("auto") == ("openai", "from ENGINE in the environment")
    assert up.choose_engine("transformers") == ("transformers", "chosen with --engine")


def test_without_torch_the_dsp_engine_is_chosen(monkeypatch):
    monkeypatch.delenv("ENGINE", raising=False)
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # no torch.cuda: as a broken install
    assert up.choose_engine("auto")[0] == "dsp"


def test_preannotate_chooses_like_up_and_caches_in_the_user_data_folder(gpu, user_home):
    gpu(False)
    settings, why = run_settings(Settings(), "auto", "http://ls:8080", "tok", environ={})
    assert settings.engine == "dsp" and "no GPU" in why
    assert settings.model_dir == user_home / "model_dir" and settings.model_dir.is_absolute()
    assert (settings.label_studio_url, settings.label_studio_api_key) == ("http://ls:8080", "tok")
    assert up.default_data_dir() == user_home  # the folder `up` runs in by default
    assert list(Path.cwd().iterdir()) == []  # choosing wrote nothing into the current folder


def test_preannotate_keeps_model_dir_and_engine_from_the_environment(gpu, user_home, tmp_path, monkeypatch):
    gpu(False)
    monkeypatch.setenv("ENGINE", "openai")
    mine = tmp_path / "my-cache"
    settings, why = run_settings(Settings(model_dir=mine), "auto", "http://ls", "t", environ={"MODEL_DIR": str(mine)})
    assert settings.engine == "openai" and why == "from ENGINE in the environment"
    assert settings.model_dir == mine
    assert run_settings(Settings(), "dsp", "http://ls", "t", environ={})[0].engine == "dsp"


def test_an_old_data_folder_in_the_current_folder_is_still_used(user_home):
    old = Path("ls-acestep-data")
    old.mkdir()
    assert up.default_data_dir() == user_home  # a folder without a login is not ours
    (old / up.STATE_FILE).write_text("{}")
    assert up.default_data_dir() == old


def test_label_studio_command_line_holds_no_secret(tmp_path):
    state = up.load_state(tmp_path / "none.json")  # a first run's fresh login
    layout = up.Layout(tmp_path / "data")
    cmd = up.label_studio_command(Path("/venv/bin/label-studio"), layout, "127.0.0.1", 8080)
    line = " ".join(cmd)
    assert state.password not in line and state.token not in line and state.username not in line
    assert "--password" not in cmd and "--user-token" not in cmd and "--username" not in cmd
    assert "--enable-legacy-api-token" in cmd  # the token given in the environment must work as a legacy token
    # Label Studio reads the login from these variables (label_studio/server.py, get_env with its prefix)
    assert up.login_env(state) == {"LABEL_STUDIO_USERNAME": state.username, "LABEL_STUDIO_PASSWORD": state.password,
                                   "LABEL_STUDIO_USER_TOKEN": state.token}


def test_tail_reads_only_the_end_of_a_long_log(tmp_path, monkeypatch):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {n}\n" for n in range(200_000)))  # ~2 MB, appended to over many runs
    reads = []
    real_open = open

    def counting_open(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        real_read = handle.read
        handle.read = lambda *a: reads.append(len(data := real_read(*a))) or data
        return handle

    monkeypatch.setattr("builtins.open", counting_open)
    assert up.tail(log, 3) == "line 199997\nline 199998\nline 199999"
    assert reads and sum(reads) <= up.TAIL_BYTES  # read through open(), the end only
    assert up.tail(tmp_path / "missing.log") == ""
