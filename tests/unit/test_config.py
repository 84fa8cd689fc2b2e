"""Configuration: TOML defaults, per-environment files, KB_ overrides, early failure."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from app import resources
from app.config import load_settings
from app.errors import ConfigError
from app.settings import Settings

pytestmark = pytest.mark.unit


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_project_defaults_load_without_any_environment() -> None:
    settings = load_settings(environ={})
    assert settings.env == "development"
    assert settings.retrieval.mode == "hybrid"
    assert settings.embedding.model == "all-MiniLM-L6-v2"
    assert settings.secrets.anthropic_api_key is None


def test_without_files_or_variables_the_settings_are_the_struct_defaults() -> None:
    assert load_settings(environ={}, config_dir=Path("/nonexistent")) == Settings()
    assert Settings().access.anonymous is False  # closed unless a configuration opens it


def test_the_development_configuration_opens_only_the_local_demo() -> None:
    development = load_settings(environ={})
    production = load_settings(environ={"KB_ENV": "production"})

    assert development.access.anonymous and not production.access.anonymous
    # Apart from the demo's openness, development runs on the struct defaults.
    assert msgspec.structs.replace(development, access=Settings().access) == Settings()


def test_environment_file_overrides_defaults(tmp_path: Path) -> None:
    write(tmp_path, "default.toml", "[retrieval]\ntop_k = 4\ntimeout_s = 3.0\n")
    write(tmp_path, "staging.toml", "[retrieval]\ntimeout_s = 1.5\n")
    settings = load_settings(environ={"KB_ENV": "staging"}, config_dir=tmp_path)
    assert settings.env == "staging"
    assert settings.retrieval.timeout_s == 1.5
    assert settings.retrieval.top_k == 4


def test_kb_variables_override_files_with_typed_values(tmp_path: Path) -> None:
    write(tmp_path, "default.toml", "[retrieval]\ntop_k = 4\n")
    settings = load_settings(
        environ={"KB_RETRIEVAL__TOP_K": "7", "KB_DATA_DIR": "/tmp/kb-x", "KB_INGEST__INCLUDE": '["*.md"]'},
        config_dir=tmp_path,
    )
    assert settings.retrieval.top_k == 7
    assert settings.data_dir == "/tmp/kb-x"
    assert settings.ingest.include == ("*.md",)


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "default.toml", "[retrieval]\ntop_kk = 4\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_dir=tmp_path)
    assert "retrieval.top_kk" in caught.value.message
    assert str(path) in caught.value.message


def test_wrong_type_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "default.toml", '[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_dir=tmp_path)
    assert "server.port" in caught.value.message
    assert str(path) in caught.value.message


def test_out_of_range_value_from_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"KB_SERVER__PORT": "70000"}, config_dir=tmp_path)
    assert "server.port" in caught.value.message
    assert "KB_SERVER__PORT" in caught.value.message


def test_unknown_environment_without_a_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KB_ENV='prodution'"):
        load_settings(environ={"KB_ENV": "prodution"}, config_dir=tmp_path)


def test_secrets_come_only_from_the_environment(tmp_path: Path) -> None:
    write(tmp_path, "default.toml", '[secrets]\nanthropic_api_key = "sk-in-a-file"\n')
    with pytest.raises(ConfigError, match="secrets"):
        load_settings(environ={}, config_dir=tmp_path)
    settings = load_settings(
        environ={"ANTHROPIC_API_KEY": "sk-test", "QDRANT_URL": "http://q:6333"},
        config_dir=Path("/nonexistent"),
    )
    assert settings.secrets.anthropic_api_key == "sk-test"
    assert "sk-test" not in repr(settings.secrets)


def test_several_workers_need_a_qdrant_server(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="QDRANT_URL"):
        load_settings(environ={"KB_SERVER__WORKERS": "2"}, config_dir=tmp_path)
    settings = load_settings(
        environ={"KB_SERVER__WORKERS": "2", "QDRANT_URL": "http://q:6333"}, config_dir=tmp_path
    )
    assert settings.server.workers == 2


def test_the_openai_provider_without_its_server_fails_at_load_naming_both_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"openai_base_url .* generation.openai_model"):
        load_settings(environ={"KB_GENERATION__PROVIDER": "openai"}, config_dir=tmp_path)
    with pytest.raises(ConfigError, match="openai_model"):
        load_settings(
            environ={
                "KB_GENERATION__PROVIDER": "openai",
                "KB_GENERATION__OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
            },
            config_dir=tmp_path,
        )
    settings = load_settings(
        environ={
            "KB_GENERATION__PROVIDER": "openai",
            "KB_GENERATION__OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
            "KB_GENERATION__OPENAI_MODEL": "llama3.1:8b",
        },
        config_dir=tmp_path,
    )
    assert settings.generation.openai_endpoint() == ("http://127.0.0.1:11434/v1", "llama3.1:8b")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "default.toml", "[retrieval\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_settings(environ={}, config_dir=tmp_path)


def test_kb_config_dir_chooses_the_configuration_folder(tmp_path: Path) -> None:
    write(tmp_path, "default.toml", "[retrieval]\ntop_k = 4\n")
    settings = load_settings(environ={"KB_CONFIG_DIR": str(tmp_path)})
    assert settings.retrieval.top_k == 4


def test_kb_config_dir_naming_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KB_CONFIG_DIR"):
        load_settings(environ={"KB_CONFIG_DIR": str(tmp_path / "typo")})


def test_a_checkout_uses_the_configuration_and_prompts_of_its_source_tree() -> None:
    root = Path(__file__).resolve().parents[2]
    assert resources.config_dir(environ={}) == root / "config"
    assert resources.prompts_dir(environ={}) == root / "prompts"


def test_kb_prompts_dir_chooses_the_prompts_and_is_not_a_setting(tmp_path: Path) -> None:
    environ = {"KB_PROMPTS_DIR": str(tmp_path)}
    assert load_settings(environ=environ).prompts.directory is None  # not an unknown key either
    assert resources.prompts_dir(None, environ) == tmp_path


def test_the_prompts_directory_setting_wins_and_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        environ={"KB_PROMPTS__DIRECTORY": "my-prompts", "KB_PROMPTS_DIR": "/elsewhere"}, config_dir=tmp_path
    )
    chosen = resources.prompts_dir(settings.prompts.directory, {"KB_PROMPTS_DIR": "/elsewhere"})
    assert chosen.resolve() == (tmp_path / "my-prompts").resolve()
