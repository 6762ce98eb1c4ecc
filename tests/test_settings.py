"""Backend settings from the environment: defaults, parsing, and a message naming each bad variable."""

import pytest

from ml_backend.settings import ENV_VARS, ServerSettings, Settings, SettingsError


@pytest.fixture
def env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_from_an_empty_environment(env):
    s = Settings.from_env()
    assert s == Settings()
    assert (s.engine, s.model_id, s.segmentation, s.segment_seconds) == (
        "transformers", "Qwen/Qwen2-Audio-7B-Instruct", "structure", 30.0)


def test_values_are_parsed(env):
    for name, value in {"ENGINE": "DSP", "BATCH_SIZE": "8", "TOP_P": "0.9", "DEVICE": "cuda:1",
                        "LOG_LEVEL": "debug", "LABEL_STUDIO_URL": "http://ls:8080/", "QUEUE_WORKERS": "0"}.items():
        env.setenv(name, value)
    s = Settings.from_env()
    assert (s.engine, s.batch_size, s.top_p, s.device, s.log_level, s.label_studio_url, s.queue_workers) == (
        "dsp", 8, 0.9, "cuda:1", "DEBUG", "http://ls:8080", 0)


@pytest.mark.parametrize("name,value", [
    ("ENGINE", "vllm"), ("SEGMENTATION", "beats"), ("SEGMENT_SECONDS", "45"), ("OVERLAP_SECONDS", "20"),
    ("BATCH_SIZE", "0"), ("BATCH_SIZE", "four"), ("MAX_CONCURRENCY", "0"), ("DEVICE", "gpu"),
    ("LOG_LEVEL", "VERBOSE"), ("MAX_NEW_TOKENS", "0"), ("MAX_ATTEMPTS", "0"), ("MAX_RETRIES", "-1"),
    ("QUEUE_WORKERS", "-1"), ("TEMPERATURE", "-0.5"), ("TOP_P", "0"), ("TOP_P", "1.5"),
    ("REQUEST_TIMEOUT", "0"), ("FETCH_TIMEOUT", "-3"), ("BASIC_AUTH_USER", "admin"),
])
def test_a_bad_value_names_its_variable(env, name, value):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        Settings.from_env()
    assert name in str(err.value)


def test_server_settings(env):
    assert ServerSettings.from_env() == ServerSettings(port=9090, workers=1, threads=8)
    env.setenv("PORT", "9191")
    env.setenv("WORKERS", "2")
    assert (ServerSettings.from_env().port, ServerSettings.from_env().workers) == (9191, 2)


@pytest.mark.parametrize("name,value", [("PORT", "http"), ("PORT", "70000"), ("WORKERS", "0"), ("THREADS", "x")])
def test_a_bad_server_value_names_its_variable(env, name, value):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        ServerSettings.from_env()
    assert name in str(err.value)
