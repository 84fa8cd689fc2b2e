"""``[store.cluster]``: validated when the configuration loads, turned into a server's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import models

from app.config import load_settings
from app.errors import ConfigError
from app.settings import Settings
from app.store.edge import EdgeIndexing
from app.store.opening import edge_indexing, ignored_settings, server_layout

pytestmark = pytest.mark.unit


def from_toml(tmp_path: Path, text: str, **environ: str) -> Settings:
    (tmp_path / "default.toml").write_text(text)
    return load_settings(environ=environ, config_dir=tmp_path)


def test_a_cluster_section_in_toml_is_read(tmp_path: Path) -> None:
    settings = from_toml(
        tmp_path,
        "[store.cluster]\nshard_number = 4\nreplication_factor = 2\nwrite_consistency_factor = 2\n"
        'quantization = "int8"\n',
    )
    cluster = settings.store.cluster
    assert (cluster.shard_number, cluster.replication_factor, cluster.write_consistency_factor) == (4, 2, 2)
    assert cluster.quantization == "int8"


def test_write_consistency_above_replication_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        from_toml(tmp_path, "[store.cluster]\nreplication_factor = 2\nwrite_consistency_factor = 3\n")
    assert "write_consistency_factor (3) must not exceed store.cluster.replication_factor (2)" in str(
        refused.value
    )
    assert "default.toml" in str(refused.value)  # where it came from


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REPLICATION_FACTOR", "0"),
        ("SHARD_NUMBER", "0"),
        ("WRITE_CONSISTENCY_FACTOR", "0"),
        ("QUANTIZATION", '"binary"'),
        ("QUANTIZATION_QUANTILE", "0.3"),
        ("QUANTIZATION_QUANTILE", "1.5"),
        ("OVERSAMPLING", "0.5"),
        ("ON_DISK_VECTORS", '"sometimes"'),
        ("SHARDS", "3"),  # not a setting
    ],
)
def test_an_out_of_range_cluster_setting_is_a_config_error(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"store\.cluster"):
        load_settings(environ={f"KB_STORE__CLUSTER__{variable}": value})


def test_differences_name_only_the_settings_changed_from_the_defaults() -> None:
    assert Settings().store.cluster.differences() == []
    settings = load_settings(
        environ={"KB_STORE__CLUSTER__ON_DISK_VECTORS": "true", "KB_STORE__CLUSTER__OVERSAMPLING": "3.0"}
    )
    assert settings.store.cluster.differences() == [
        "store.cluster.on_disk_vectors",
        "store.cluster.oversampling",
    ]
    # Setting a value to its default is no difference.
    assert (
        load_settings(environ={"KB_STORE__CLUSTER__REPLICATION_FACTOR": "1"}).store.cluster.differences()
        == []
    )


def test_the_server_layout_carries_the_settings() -> None:
    settings = load_settings(
        environ={
            "KB_STORE__HNSW_M": "32",
            "KB_STORE__HNSW_EF_CONSTRUCT": "200",
            "KB_STORE__CLUSTER__SHARD_NUMBER": "3",
            "KB_STORE__CLUSTER__QUANTIZATION": '"int8"',
            "KB_STORE__CLUSTER__QUANTIZATION_QUANTILE": "0.98",
            "KB_STORE__CLUSTER__OVERSAMPLING": "4.0",
        }
    )
    layout = server_layout(settings.store)
    assert layout.shard_number == 3 and layout.replication_factor == 1
    assert layout.hnsw == models.HnswConfigDiff(m=32, ef_construct=200)
    assert layout.quantization is not None
    assert layout.quantization.scalar.quantile == 0.98
    assert layout.quantization.scalar.type == models.ScalarType.INT8
    assert layout.search == models.QuantizationSearchParams(rescore=True, oversampling=4.0)
    assert "shard_number" in layout.create_options() and "quantization_config" in layout.create_options()


def test_without_quantization_the_layout_asks_searches_for_none() -> None:
    layout = server_layout(Settings().store)
    assert layout.quantization is None and layout.search is None
    assert "shard_number" not in layout.create_options()  # left to the server
    assert "quantization_config" not in layout.create_options()


def test_only_the_embedded_engines_ignore_the_cluster_settings() -> None:
    changed = {"KB_STORE__CLUSTER__REPLICATION_FACTOR": "3"}
    assert ignored_settings(load_settings(environ=changed)) == ["store.cluster.replication_factor"]
    assert ignored_settings(load_settings(environ={**changed, "QDRANT_URL": "http://qdrant:6333"})) == []
    local = load_settings(environ={**changed, "KB_STORE__ENGINE": "local", "KB_STORE__HNSW_EF": "256"})
    assert ignored_settings(local) == ["store.cluster.replication_factor", "store.hnsw_ef"]


def test_the_dense_index_setting_reaches_the_embedded_engine_and_is_named_where_it_does_not_apply(
    tmp_path: Path,
) -> None:
    settings = from_toml(tmp_path, '[store]\ndense_index = "int8"\n')
    assert edge_indexing(settings.store).dense_index == "int8"
    assert edge_indexing(Settings().store) == EdgeIndexing()  # the settings' defaults are the engine's
    assert ignored_settings(settings) == []  # Edge applies it
    on_server = load_settings(environ={"KB_STORE__DENSE_INDEX": "int8", "QDRANT_URL": "http://qdrant:6333"})
    assert ignored_settings(on_server) == ["store.dense_index"]
    local = load_settings(environ={"KB_STORE__DENSE_INDEX": "int8", "KB_STORE__ENGINE": "local"})
    assert ignored_settings(local) == ["store.dense_index"]


def test_an_unknown_dense_index_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        from_toml(tmp_path, '[store]\ndense_index = "ivf"\n')
    assert "dense_index" in str(refused.value)
