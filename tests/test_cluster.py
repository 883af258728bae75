"""Distributed indexing: a local Dask cluster with two worker processes gives the index a local run gives."""

from __future__ import annotations

import pytest

from awesearch.errors import AwesearchError
from awesearch.store import IndexStore
from helpers import write_audio
from indexer import index_paths
from test_indexer import assert_same_index


def _encoders_loaded() -> int:
    from indexer.cluster import _worker_models

    return _worker_models.cache_info().currsize


@pytest.mark.slow
def test_two_worker_cluster_equals_local_run(corpus, tmp_path):
    distributed = pytest.importorskip("distributed")
    (corpus / "notes.mp3").write_text("not audio\n" * 30)  # a file the workers cannot decode
    write_audio(corpus / "silence.wav", __import__("numpy").zeros(16000, "float32"))
    local = tmp_path / "local"
    index_paths([corpus], local, model="random")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = tmp_path / "remote"
        report = index_paths([corpus], remote, model="random", cluster=cluster.scheduler_address, commit_interval_s=0.0)
        with distributed.Client(cluster) as client:  # both workers loaded the encoder: both embedded files
            loaded = client.run(_encoders_loaded)
    assert sorted(loaded.values()) == [1, 1]
    assert report.indexed == 4 and [s.reason[:22] for s in report.skipped] == ["not decodable as audio"]
    assert_same_index(local, remote)
    a, b = IndexStore.open(local).load_files(), IndexStore.open(remote).load_files()
    assert [(f.path, f.status, f.windows, f.content_hash) for f in a] == [(f.path, f.status, f.windows, f.content_hash) for f in b]
    assert IndexStore.open(remote).verify(full=True) == []


def test_unreachable_scheduler_is_one_line(corpus, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from indexer import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(AwesearchError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        index_paths([corpus], tmp_path / "idx", model="random", cluster="tcp://127.0.0.1:9")
    assert not (tmp_path / "idx" / "manifest.json").exists()
