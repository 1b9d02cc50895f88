"""set_attention_dropout: reaches the attention probabilities of real Hugging Face models, and only them.
FastDropout / use_fast_dropout: dropout as torch defines it (drop with p, scale by 1 / (1 - p)), with
masks drawn 16 bits at a time."""

from __future__ import annotations

import pytest
import torch

from synthrank.models.dropout import FastDropout, drop_mask, set_attention_dropout, use_fast_dropout


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


def test_drop_mask_drops_every_lane_of_a_random_word_at_the_probability():
    """Four 16-bit lanes per 64-bit word: each lane is dropped with p (rounded to 1/65536), and two
    lanes of one word are independent. A lane taken from a draw that leaves the sign bit at 0 would
    be dropped almost never; a mask built from the same bits twice would correlate."""
    torch.manual_seed(0)
    count, probability = 4_000_000, 0.1
    lanes = drop_mask((count,), probability).view(-1, 4).double()
    expected = round(probability * 65536) / 65536  # 0.100006
    sigma = (expected * (1 - expected) / (count / 4)) ** 0.5
    for lane in range(4):
        assert abs(lanes[:, lane].mean().item() - expected) < 5 * sigma, lane
    both = (lanes[:, 0] * lanes[:, 1]).mean().item()  # P(two lanes of one word dropped) = p^2
    assert abs(both - expected ** 2) < 5 * (expected ** 2 / (count / 4)) ** 0.5
    # odd sizes and shapes: the mask has the shape asked for, whatever the word count
    assert drop_mask((3, 5, 7), 0.5).shape == (3, 5, 7)
    assert not drop_mask((1000,), 0.0).any() and drop_mask((1000,), 1.0).all()
    with pytest.raises(ValueError, match="must be in"):
        drop_mask((10,), 1.5)


def test_fast_dropout_is_dropout_forward_and_backward():
    """Kept elements are scaled by 1 / (1 - p), dropped ones are 0, and the gradient passes through
    exactly the kept ones with the same scale; eval mode and p = 0 are the identity; the seed
    decides the mask."""
    inputs = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    layer = FastDropout(0.25)
    torch.manual_seed(3)
    out = layer(inputs)
    kept = out != 0
    assert 0.2 < 1 - kept.double().mean().item() < 0.3
    torch.testing.assert_close(out[kept], inputs[kept] / 0.75)
    out.backward(torch.full_like(out, 2.0))
    torch.testing.assert_close(inputs.grad, kept.double() * 2.0 / 0.75)
    torch.manual_seed(3)
    torch.testing.assert_close(layer(inputs), out)  # same seed, same mask
    torch.manual_seed(4)
    assert not torch.equal(layer(inputs), out)
    assert layer.eval()(inputs) is inputs
    assert FastDropout(0.0)(inputs) is inputs
    torch.autograd.gradcheck(lambda x: (torch.manual_seed(5), FastDropout(0.3)(x))[1], (inputs[:4, :5].detach().requires_grad_(),))


def test_use_fast_dropout_replaces_the_plain_dropouts_of_a_real_model():
    """A BERT keeps its behaviour: the same probabilities (attention ones still set by
    set_attention_dropout), the same outputs in eval mode, and random outputs in train mode that
    one seed reproduces; gradient checkpointing recomputes the same masks (same gradients)."""
    model = _bert(hidden=0.3, attention=0.0)
    ids = torch.randint(1, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    evaluated = model.eval()(input_ids=ids).last_hidden_state
    model.train()
    assert use_fast_dropout(model) == 7  # embeddings, 2 hidden per layer, 1 attention per layer
    plain = [m for m in model.modules() if type(m) is torch.nn.Dropout]
    fast = [m for m in model.modules() if isinstance(m, FastDropout)]
    assert not plain and len(fast) == 7 and {m.p for m in fast} == {0.0, 0.3} and all(m.training for m in fast)
    assert set_attention_dropout(model, 0.0) == 2
    torch.testing.assert_close(model.eval()(input_ids=ids).last_hidden_state, evaluated)
    model.train()
    first, second = _twice(model)
    assert not torch.allclose(first, second)

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
        torch.manual_seed(11)
        model(input_ids=ids).last_hidden_state.pow(2).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    without = gradients(False)
    assert gradients(False).keys() == without.keys()
    for name, grad in gradients(True).items():
        torch.testing.assert_close(grad, without[name], msg=name)
    # what is not a plain nn.Dropout stays as it is
    class OwnDropout(torch.nn.Dropout):
        pass
    assert use_fast_dropout(torch.nn.Sequential(OwnDropout(0.1), FastDropout(0.1))) == 0
