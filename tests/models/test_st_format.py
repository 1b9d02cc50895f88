"""Models in the sentence-transformers format encode here exactly as ``SentenceTransformer.encode``.

Each model is built in the test from the tiny random BERT (no downloads), saved by
sentence-transformers itself, then encoded both ways; small ``batch_tokens`` makes synthrank
split the texts into several length-sorted batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthrank.models import Encoder, EncoderConfig

TEXTS = ["a short one", "a much longer text about proteins and cells " * 6, "medium length sentence here",
         "x", "Another Text, With Capitals and punctuation!", "z " * 40, "cats purr", "dogs bark loudly at night"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same_vectors(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    cos = cosines(ours, reference)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-3)


def _tiny_st(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def _both_ways(path, prompts=(("query", "query"), ("passage", "document"))):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    ours = Encoder(EncoderConfig(model=str(path), dtype="float32", device="cpu", batch_tokens=96))
    for kind, prompt_name in prompts:
        reference = st.encode(TEXTS, prompt_name=prompt_name, convert_to_numpy=True, batch_size=3)
        yield kind, ours.encode(TEXTS, kind, show_progress=False), reference


def test_a_dense_layer_takes_part(tiny_model_dir, tmp_path):
    """Transformer -> mean Pooling -> Dense(32 -> 16, tanh) -> Normalize, with prompts."""
    from sentence_transformers.base.modules import Dense, Normalize

    model = _tiny_st(tiny_model_dir)
    torch.manual_seed(1)
    model.append(Dense(32, 16, activation_function=torch.nn.Tanh()))
    model.append(Normalize())
    model.prompts = {"query": "query: ", "document": "passage: "}
    model.save(str(tmp_path / "dense"))
    for kind, ours, reference in _both_ways(tmp_path / "dense"):
        assert ours.shape == (len(TEXTS), 16), kind
        assert_same_vectors(ours, reference)
    encoder = Encoder(EncoderConfig(model=str(tmp_path / "dense"), dtype="float32"))
    assert encoder.config.query_prefix == "query: " and encoder.config.normalize is True


@pytest.mark.parametrize("mode", ["max", "cls", "weightedmean"])
def test_non_mean_pooling(tiny_model_dir, tmp_path, mode):
    from sentence_transformers.sentence_transformer.modules import Pooling

    model = _tiny_st(tiny_model_dir)
    model._modules["1"] = Pooling(32, pooling_mode=mode)
    model.save(str(tmp_path / mode))
    for _, ours, reference in _both_ways(tmp_path / mode, prompts=(("passage", None),)):
        assert_same_vectors(ours, reference)
    assert Encoder(EncoderConfig(model=str(tmp_path / mode))).config.pooling == mode


def test_a_prompt_excluded_from_pooling(tiny_model_dir, tmp_path):
    """include_prompt=False: the prompt's tokens are read but not pooled, as sentence-transformers does it."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    model = _tiny_st(tiny_model_dir)
    model._modules["1"] = Pooling(32, pooling_mode="mean", include_prompt=False)
    model.prompts = {"query": "represent this query for retrieval: "}
    model.save(str(tmp_path / "instr"))
    for _, ours, reference in _both_ways(tmp_path / "instr", prompts=(("query", "query"),)):
        assert_same_vectors(ours, reference)


def test_bundled_minilm_vectors_are_those_of_the_former_hand_written_path():
    """The default model: mean pooling over the last hidden state, L2-normalised, 256 tokens (what the
    hand-written encoder computed, and what the published numbers were measured with)."""
    from transformers import AutoModel, AutoTokenizer

    from synthrank.models import bundled_encoder_path

    texts = ["What causes diabetes?", "Insulin resistance in muscle cells.", "the cat sat on the mat",
             "A randomized trial of vitamin D in older adults.", "BRCA1 mutations raise cancer risk",
             "short", "Protein folding and misfolding diseases", "Effects of exercise on heart rate"]
    folder = bundled_encoder_path()
    tokenizer, transformer = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = transformer(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        former = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1).numpy()
    encoder = Encoder(EncoderConfig(dtype="float32", batch_tokens=64))
    assert (encoder.config.pooling, encoder.config.normalize, encoder.config.passage_max_length) == ("mean", True, 256)
    for kind in ("query", "passage"):
        assert_same_vectors(encoder.encode(texts, kind, show_progress=False), former)


def test_a_gathered_state_dict_is_what_gets_saved(tiny_model_dir, tmp_path):
    """Under ZeRO-3 the Trainer passes a gathered state dict (the live parameters are shards)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense

    from synthrank.models import save_model

    model = _tiny_st(tiny_model_dir)
    model.append(Dense(32, 8))
    gathered = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_model(model, tmp_path / "saved", state_dict=gathered)
    loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu").state_dict()
    assert loaded.keys() == gathered.keys()
    for key, value in gathered.items():
        torch.testing.assert_close(loaded[key], value, msg=key)


def test_loading_and_saving_show_no_hugging_face_progress_bars(tiny_model_dir, tmp_path, capfd):
    from synthrank.models import save_model

    capfd.readouterr()
    encoder = Encoder(EncoderConfig(model=str(tiny_model_dir)))
    save_model(encoder.model, tmp_path / "copy")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err and "it/s" not in err, err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # switched off only while loading / saving


def test_remote_code_stays_off(tiny_model_dir, monkeypatch):
    import sentence_transformers

    seen = {}
    real = sentence_transformers.SentenceTransformer

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", spy)
    Encoder(EncoderConfig(model=str(tiny_model_dir)))
    assert seen["trust_remote_code"] is False
