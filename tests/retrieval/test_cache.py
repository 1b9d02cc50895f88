import numpy as np

from synthrank.data import Corpus
from synthrank.models import Encoder, EncoderConfig
from synthrank.retrieval import EmbeddingCache, corpus_fingerprint


def corpus(*texts):
    return Corpus(ids=[f"d{i}" for i in range(len(texts))], titles=[""] * len(texts), texts=list(texts))


def test_hit_after_miss(tmp_path):
    cache, c = EmbeddingCache(tmp_path), corpus("a", "b")
    calls = []

    def compute():
        calls.append(1)
        return np.ones((2, 3), dtype=np.float32)

    first, hit1 = cache.get_or_compute("fp", c, compute)
    second, hit2 = cache.get_or_compute("fp", c, compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(first, second)


def test_any_corpus_change_changes_the_key(tmp_path):
    cache = EmbeddingCache(tmp_path)
    base = cache.key("fp", corpus("a", "b"))
    assert cache.key("fp", corpus("a", "b!")) != base
    assert cache.key("fp", corpus("b", "a")) != base
    assert cache.key("fp", Corpus(ids=["x", "d1"], titles=["", ""], texts=["a", "b"])) != base
    assert cache.key("fp", Corpus(ids=["d0", "d1"], titles=["t", ""], texts=["a", "b"])) != base
    assert cache.key("other", corpus("a", "b")) != base
    assert corpus_fingerprint(corpus("ab", "")) != corpus_fingerprint(corpus("a", "b"))


def test_damaged_entry_is_recomputed(tmp_path):
    cache, c = EmbeddingCache(tmp_path), corpus("a", "b")
    key = cache.key("fp", c)
    cache.save(key, np.zeros((2, 3)))
    cache.path(key).write_bytes(b"not numpy")
    assert cache.load(key, 2) is None
    cache.save(key, np.zeros((3, 3)))  # wrong row count for this corpus
    assert cache.load(key, 2) is None


def test_encoder_fingerprint_tracks_weights_and_settings(tiny_model_dir, tmp_path):
    import shutil

    import torch
    from transformers import BertModel

    base = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32")).fingerprint()
    for change in ({"pooling": "cls"}, {"normalize": True}, {"query_prefix": "query: "},
                   {"passage_max_length": 32}, {"dtype": "bfloat16"}):
        settings = {"dtype": "float32", **change}
        assert Encoder(EncoderConfig(model=str(tiny_model_dir), **settings)).fingerprint() != base
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model_dir, changed)
    model = BertModel.from_pretrained(changed)
    with torch.no_grad():
        model.pooler.dense.bias[0] += 1e-3  # the smallest edit still changes the fingerprint
    model.save_pretrained(changed)
    assert Encoder(EncoderConfig(model=str(changed), dtype="float32")).fingerprint() != base
    assert Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32")).fingerprint() == base
