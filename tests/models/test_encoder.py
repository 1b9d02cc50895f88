import numpy as np
import pytest
import torch

from synthrank.models import Encoder, EncoderConfig
from synthrank.models.encoder import _token_budget_batches

TEXTS = ["a short one", "a much longer text " * 12, "medium length sentence here", "x",
         "another text of some length", "z " * 40]


def test_reads_sentence_transformers_settings(tiny_model_dir):
    """The fixture's folder is hand-written in the legacy format (pooling_mode_* keys)."""
    encoder = Encoder(EncoderConfig(model=str(tiny_model_dir)))
    assert encoder.config.pooling == "mean" and encoder.config.normalize is False
    assert encoder.config.passage_max_length == encoder.config.query_max_length == 64
    overridden = Encoder(EncoderConfig(model=str(tiny_model_dir), pooling="cls", normalize=True))
    assert [type(m).__name__ for m in overridden.model] == ["Transformer", "Pooling", "Normalize"]
    assert overridden.config.pooling == "cls" and overridden.model[1].pooling_mode == "cls"


def test_bundled_settings():
    encoder = Encoder(EncoderConfig())
    assert (encoder.config.pooling, encoder.config.normalize, encoder.config.passage_max_length) == ("mean", True, 256)


def test_encode_keeps_input_order_and_matches_one_by_one(tiny_model_dir):
    encoder = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32", batch_tokens=128))
    batched = encoder.encode(TEXTS, show_progress=False)
    with torch.no_grad():
        single = np.stack([encoder.embed(encoder.tokenize([t], "passage"))[0].numpy() for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_batching_does_not_change_vectors(tiny_model_dir):
    small = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32", batch_tokens=64)).encode(TEXTS, show_progress=False)
    large = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32", batch_tokens=100000)).encode(TEXTS, show_progress=False)
    np.testing.assert_allclose(small, large, atol=1e-5)


def test_prefixes_and_normalisation(tiny_model_dir):
    plain = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32"))
    prefixed = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32", query_prefix="query: ", normalize=True))
    q_plain = plain.encode(["cats"], "query", show_progress=False)
    q_pref = prefixed.encode(["cats"], "query", show_progress=False)
    p_pref = prefixed.encode(["cats"], "passage", show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(q_pref, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(q_pref, q_plain / np.linalg.norm(q_plain))  # the prefix changed the input
    np.testing.assert_allclose(p_pref, q_plain / np.linalg.norm(q_plain), rtol=1e-4)  # passages: no prefix


def test_bf16_stays_close_to_fp32(tiny_model_dir):
    fp32 = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32")).encode(TEXTS, show_progress=False)
    bf16 = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="bfloat16")).encode(TEXTS, show_progress=False)
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.999


def test_int8_is_close_to_fp32_and_leaves_the_float_model_alone(tiny_model_dir):
    """The opt-in int8 path quantizes a copy for inference: training keeps the float Linear layers."""
    fp32 = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32")).encode(TEXTS, show_progress=False)
    encoder = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="int8"))
    int8 = encoder.encode(TEXTS, show_progress=False)
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() > 0.99
    assert not np.array_equal(fp32, int8)  # it did run quantized
    linears = [m for m in encoder.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is torch.nn.Linear for m in linears)
    assert encoder.fingerprint() != Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32")).fingerprint()


@pytest.mark.slow
def test_int8_minilm_ranks_like_fp32_on_scifact_passages(data_dir):
    """On real text the bundled MiniLM's int8 vectors stay within a small angle of fp32 (measured:
    mean cosine 0.982, lowest 0.973 over these 40 abstracts)."""
    from synthrank.data import load_beir

    docs = load_beir(data_dir / "scifact", "test").corpus.documents()[:40]
    fp32 = Encoder(EncoderConfig(dtype="float32")).encode(docs, show_progress=False)
    int8 = Encoder(EncoderConfig(dtype="int8")).encode(docs, show_progress=False)
    cosine = (fp32 * int8).sum(1)  # both unit length
    assert cosine.mean() > 0.975 and cosine.min() > 0.95


def test_token_budget_batches():
    encoded = [10, 8, 8, 3, 1]  # token counts
    # longest first: [0, 1] pads to 2 x 10 = 20 tokens (the budget, allowed); [2, 3] to 2 x 8;
    # adding 4 to that would make 3 x 8 = 24
    batches = _token_budget_batches([0, 1, 2, 3, 4], encoded, batch_tokens=20, max_batch_size=100)
    assert batches == [[0, 1], [2, 3], [4]]
    # a budget that never binds: max_batch_size alone cuts, keeping the given order
    assert _token_budget_batches([4, 3, 2, 1, 0], encoded, 1000, 2) == [[4, 3], [2, 1], [0]]
    # a text longer than the budget still gets a batch of its own
    assert _token_budget_batches([0, 4], encoded, batch_tokens=5, max_batch_size=100) == [[0], [4]]


def test_missing_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Encoder(EncoderConfig(model=str(tmp_path / "empty")))


@pytest.mark.slow
def test_bundled_minilm_matches_sentence_transformers(data_dir):
    """Same vectors as SentenceTransformer(path).encode on real SciFact passages (fp32)."""
    from sentence_transformers import SentenceTransformer

    from synthrank.data import load_beir
    from synthrank.models import bundled_encoder_path

    docs = load_beir(data_dir / "scifact", "test").corpus.documents()[:40]
    reference = SentenceTransformer(str(bundled_encoder_path()), device="cpu").encode(docs, normalize_embeddings=True)
    ours = Encoder(EncoderConfig(dtype="float32")).encode(docs, show_progress=False)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


@pytest.mark.parametrize("model", ["/no/such/model", "./runs/x/model", "runs/x/model"])
def test_a_missing_model_path_says_so_and_what_is_accepted(model):
    from synthrank.models import resolve_model_path

    with pytest.raises(FileNotFoundError, match=r"no such folder\. A model is a local folder.*bundled alias.*hub id"):
        resolve_model_path(model)


def test_a_hub_id_is_refused_offline(monkeypatch):
    from synthrank.models import resolve_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE forbid"):
        resolve_model_path("some-org/some-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"


@pytest.mark.parametrize("length", [0, 129, 2000])
def test_max_length_outside_the_model_positions_is_refused(tiny_model_dir, length):
    with pytest.raises(ValueError, match="must be between 1 and 128"):
        Encoder(EncoderConfig(model=str(tiny_model_dir), query_max_length=length, passage_max_length=length))


def test_progress_unit_is_spelt_queries(tiny_model_dir, capsys):
    encoder = Encoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32"))
    encoder.encode(["a query", "another"], "query", show_progress=True)
    err = capsys.readouterr().err
    assert "queries" in err and "querys" not in err
