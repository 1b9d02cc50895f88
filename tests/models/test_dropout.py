"""set_attention_dropout: reaches the attention probabilities of real Hugging Face models, and only them."""

from __future__ import annotations

import pytest
import torch

from synthrank.models.dropout import set_attention_dropout


def _bert(hidden: float, attention: float):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=hidden,
                        attention_probs_dropout_prob=attention)
    return BertModel(config).train()


def _twice(model) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    return model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state


def test_bert_attention_dropout_is_switched_off_in_the_forward_pass():
    model = _bert(hidden=0.0, attention=0.5)
    first, second = _twice(model)
    assert not torch.allclose(first, second)  # attention dropout is the only randomness, and it is on

    assert set_attention_dropout(model, 0.0) == 2  # one attention module per layer
    first, second = _twice(model)
    torch.testing.assert_close(first, second)  # in train mode, nothing random is left
    assert model.config.attention_probs_dropout_prob == 0.5  # what a save records is the model's own


def test_hidden_state_dropout_is_left_as_the_model_says():
    model = _bert(hidden=0.3, attention=0.3)
    set_attention_dropout(model, 0.0)
    probabilities = {name: module.p for name, module in model.named_modules() if isinstance(module, torch.nn.Dropout)}
    attention = {name for name in probabilities if name.endswith("attention.self.dropout")}
    assert len(attention) == 2 and all(probabilities[name] == 0.0 for name in attention)
    hidden = set(probabilities) - attention  # embeddings, attention output, feed-forward output
    assert len(hidden) == 5 and all(probabilities[name] == 0.3 for name in hidden)
    first, second = _twice(model)
    assert not torch.allclose(first, second)


def test_decoder_attention_reads_its_float_probability():
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.5)
    torch.manual_seed(0)
    model = LlamaModel(config).train()
    ids = torch.randint(1, 100, (2, 10), generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
    assert set_attention_dropout(model, 0.0) == 3
    torch.testing.assert_close(model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)


def test_a_model_without_attention_modules_is_left_alone():
    assert set_attention_dropout(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2)), 0.0) == 0


@pytest.mark.parametrize("probability", [-0.1, 1.0])
def test_a_probability_outside_0_1_is_refused(probability):
    with pytest.raises(ValueError, match="must be in"):
        set_attention_dropout(_bert(0.0, 0.1), probability)
