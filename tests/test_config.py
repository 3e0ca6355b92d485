"""config.yaml loading: every bad value fails at start with one line naming the key."""
import pytest

from config import Config, ConfigError, load_config, secret, to_yaml


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_shipped_config_is_the_defaults():
    assert load_config() == Config()


@pytest.mark.parametrize("text, key, allowed", [
    ("vad:\n  treshold: 0.5\n", "vad.treshold", "threshold"),
    ("vad:\n  threshold: 1.7\n", "vad.threshold", "[0.0, 1.0]"),
    ("vad:\n  threshold: high\n", "vad.threshold", "number"),
    ("server:\n  port: yes\n", "server.port", "integer"),
    ("server:\n  port: 8080.5\n", "server.port", "integer"),
    ("asr:\n  model: large-v3\n", "asr.model", "tiny.en, base"),
    ("avatar:\n  backend: magic\n", "avatar.backend", "portrait"),
    ("server:\n  video_codec: av1\n", "server.video_codec", "h264, vp8"),
    ("vad:\n  echo_guard:\n    mode: loud\n", "vad.echo_guard.mode", "reference"),
    ("vad: 3\n", "vad", "mapping"),
    ("colour: blue\n", "colour", "server"),
    ("server:\n  ice_servers: stun.example\n", "server.ice_servers", "list"),
])
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, text, key, allowed):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg
    assert key in msg and allowed in msg


def test_malformed_yaml_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "vad:\n  threshold: [0.5\n"))
    assert "not valid YAML" in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_partial_file_and_overrides_keep_other_defaults(tmp_path):
    c = load_config(write(tmp_path, "vad:\n  end_s: 0.8\n"), overrides={"server": {"port": 9000}})
    assert c.vad.end_s == 0.8 and c.vad.start_s == Config().vad.start_s
    assert c.server.port == 9000 and isinstance(c.vad.end_s, float)


def test_secrets_come_from_the_environment_and_are_never_in_the_config(monkeypatch):
    monkeypatch.setenv("OMNI_API_KEY", "sk-very-secret")
    c = load_config()
    assert secret(c.omni.api_key_env) == "sk-very-secret"
    assert "sk-very-secret" not in repr(c) and "sk-very-secret" not in to_yaml(c)
    monkeypatch.setenv("OMNI_API_KEY", "  ")
    assert secret(c.omni.api_key_env) is None
