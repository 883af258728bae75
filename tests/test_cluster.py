"""Distributed indexing: a local Dask cluster with two worker processes gives the index a local run gives."""

from __future__ import annotations

import numpy as np
import pytest

from awesearch.errors import AwesearchError
from awesearch.store import IndexStore
from helpers import speech, write_audio
from awesearch.indexer import index_paths
from test_indexer import assert_same_index


def _encoders_loaded() -> int:
    from awesearch.indexer.cluster import _worker_models

    return _worker_models.cache_info().currsize


@pytest.mark.slow
def test_two_worker_cluster_equals_local_run(tmp_path):
    """Shipped encoder and phoneme head: windows, files table, phonetic frames and speaker pieces all equal a local
    --no-pack run's."""
    distributed = pytest.importorskip("distributed")
    audio = tmp_path / "audio"
    write_audio(audio / "a.wav", speech(["the prince spoke to us"])[0])
    write_audio(audio / "b.flac", speech(["a doctor in london"])[0])
    write_audio(audio / "silence.wav", np.zeros(16000, np.float32))
    (audio / "notes.mp3").write_text("not audio\n" * 30)  # skipped
    local = tmp_path / "local"
    index_paths([audio], local, pack=False)  # cluster workers embed each file alone: no packing across files
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = index_paths([audio], tmp_path / "remote", cluster=cluster.scheduler_address, commit_interval_s=0.0)
        with distributed.Client(cluster) as client:  # both workers loaded the models: both embedded files
            loaded = client.run(_encoders_loaded)
    remote = tmp_path / "remote"
    assert sorted(loaded.values()) == [1, 1]
    assert report.indexed == 3 and [s.reason[:22] for s in report.skipped] == ["not decodable as audio"]
    assert_same_index(local, remote)
    a, b = IndexStore.open(local).load_files(), IndexStore.open(remote).load_files()
    keys = [(f.path, f.status, f.windows, f.content_hash, f.phonetic_frames) for f in a]
    assert keys == [(f.path, f.status, f.windows, f.content_hash, f.phonetic_frames) for f in b]
    phon = {p.name: p.read_bytes() for p in local.glob("phon-*.awp")}
    assert len(phon) == 2 and phon == {p.name: p.read_bytes() for p in remote.glob("phon-*.awp")}
    assert IndexStore.open(remote).verify(full=True) == []
    from awesearch.speaker_index import load_speaker_data  # the workers stored the speaker pieces a local run stores

    here, there = load_speaker_data(IndexStore.open(local)), load_speaker_data(IndexStore.open(remote))
    assert len(here.starts) >= 2 and here.paths == there.paths
    order_here, order_there = np.lexsort((here.starts, here.file_idx)), np.lexsort((there.starts, there.file_idx))
    for a_, b_ in [(here.file_idx, there.file_idx), (here.starts, there.starts), (here.ends, there.ends)]:
        assert np.allclose(a_[order_here], b_[order_there], atol=1e-6)
    # the same embeddings up to the LSTM's arithmetic (bfloat16 where the CPU has it: batches differ here)
    cos = np.einsum("ij,ij->i", here.emb[order_here], there.emb[order_there])
    assert cos.min() > 0.999, cos.min()
    assert IndexStore.open(remote).manifest.speaker_model == IndexStore.open(local).manifest.speaker_model


def test_unreachable_scheduler_is_one_line(corpus, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from awesearch.indexer import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(AwesearchError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        index_paths([corpus], tmp_path / "idx", model="random", cluster="tcp://127.0.0.1:9")
    assert not (tmp_path / "idx" / "manifest.json").exists()
