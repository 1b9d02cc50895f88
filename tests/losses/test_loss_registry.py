"""Registry, get_loss error handling and the shared tensor helpers."""

from __future__ import annotations

import pytest
import torch

from synthrank.losses import Loss, available_losses, expand_labels, get_loss
from synthrank.losses import base
from synthrank.losses.contrastive import InfoNCELoss
from synthrank.losses.listwise import EMDLoss, KLLoss
from synthrank.losses.pairwise import LambdaLoss, MarginMSELoss, RankNetLoss
from synthrank.losses.ws2 import WS2Loss

EXPECTED = {
    "emd": EMDLoss,
    "infonce": InfoNCELoss,
    "kl": KLLoss,
    "lambdaloss": LambdaLoss,
    "margin_mse": MarginMSELoss,
    "ranknet": RankNetLoss,
    "ws2": WS2Loss,
}


def test_available_losses_is_sorted_and_complete() -> None:
    names = available_losses()
    assert names == sorted(EXPECTED)
    assert names == sorted(names)


@pytest.mark.parametrize("alias, cls", sorted(EXPECTED.items()))
def test_alias_maps_to_class(alias: str, cls: type[Loss]) -> None:
    loss = get_loss(alias)
    assert type(loss) is cls
    assert isinstance(loss, torch.nn.Module)
    assert cls.alias == alias


def test_get_loss_passes_params() -> None:
    loss = get_loss("ws2", temperature=0.5)
    assert loss.temperature == 0.5
    kl = get_loss("kl", temperature=2.0, label_temperature=0.25)
    assert (kl.temperature, kl.label_temperature) == (2.0, 0.25)
    assert "temperature=0.5" in repr(loss)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError) as info:
        get_loss("no_such_loss")
    msg = str(info.value)
    assert "no_such_loss" in msg
    for name in EXPECTED:
        assert name in msg


def test_unknown_param_names_loss_and_accepted_params() -> None:
    with pytest.raises(ValueError) as info:
        get_loss("ws2", temprature=1.0)
    msg = str(info.value)
    assert "'ws2'" in msg and "temprature" in msg and "temperature" in msg
    with pytest.raises(ValueError, match="margin_mse"):
        get_loss("margin_mse", temperature=1.0)
    with pytest.raises(ValueError, match="positive_threshold"):
        get_loss("infonce", threshold=1)


def test_invalid_param_values_raise() -> None:
    with pytest.raises(ValueError):
        get_loss("ws2", temperature=0.0)
    with pytest.raises(ValueError):
        get_loss("emd", num_levels=0)


def test_subclass_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Work on a copy so that test classes never leak into the real registry.
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    class Dummy(Loss, alias="dummy_for_test"):
        def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return scores.sum()

    class Abstract(Loss):  # no alias -> not registered
        pass

    assert "dummy_for_test" in available_losses()
    assert type(get_loss("dummy_for_test")) is Dummy
    assert Abstract.alias is None
    assert len(available_losses()) == len(EXPECTED) + 1

    with pytest.raises(ValueError, match="already registered"):

        class Clash(Loss, alias="ws2"):
            pass


def test_expand_labels_block_diagonal() -> None:
    labels = torch.tensor([[3, 1], [0, 2], [1, 1]])
    out = expand_labels(labels, 6)
    expected = torch.tensor(
        [
            [3, 1, 0, 0, 0, 0],
            [0, 0, 0, 2, 0, 0],
            [0, 0, 0, 0, 1, 1],
        ]
    )
    assert out.dtype == labels.dtype
    assert torch.equal(out, expected)


def test_expand_labels_fill_and_own_only() -> None:
    labels = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    out = expand_labels(labels, 4, fill=-1.0)
    assert torch.equal(out, torch.tensor([[1.0, 2.0, -1.0, -1.0], [-1.0, -1.0, 3.0, 0.0]]))
    # Float fill promotes integer labels to float.
    assert expand_labels(torch.tensor([[1, 2], [3, 0]]), 4, fill=0.5).is_floating_point()
    # [Q, G] layout: every row's block is columns 0..G-1, i.e. labels unchanged.
    assert torch.equal(expand_labels(labels, 2), labels)
    with pytest.raises(ValueError):
        expand_labels(labels, 3)


def test_expand_labels_does_not_mutate_input() -> None:
    labels = torch.tensor([[1, 2], [3, 0]])
    before = labels.clone()
    expand_labels(labels, 4, fill=7)
    assert torch.equal(labels, before)


def test_own_block_scores_and_mask() -> None:
    q, g = 3, 2
    scores = torch.arange(q * q * g, dtype=torch.float32).reshape(q, q * g)
    own = base.own_block_scores(scores, g)
    assert torch.equal(own, torch.tensor([[0.0, 1.0], [8.0, 9.0], [16.0, 17.0]]))
    assert base.own_block_scores(own, g) is own
    mask = base.own_block_mask(q, g, q * g)
    assert mask.sum().item() == q * g
    assert torch.equal(scores[mask].reshape(q, g), own)
    assert base.own_block_mask(q, g, g).all()


def test_check_inputs_rejects_bad_shapes() -> None:
    labels = torch.zeros(3, 2)
    assert base.check_inputs(torch.zeros(3, 6), labels) == (3, 2, 6)
    assert base.check_inputs(torch.zeros(3, 2), labels) == (3, 2, 2)
    with pytest.raises(ValueError, match="columns"):
        base.check_inputs(torch.zeros(3, 5), labels)
    with pytest.raises(ValueError, match="rows"):
        base.check_inputs(torch.zeros(4, 8), labels)
    with pytest.raises(ValueError, match="2-D"):
        base.check_inputs(torch.zeros(6), labels)
    for name in available_losses():
        with pytest.raises(ValueError):
            get_loss(name)(torch.zeros(3, 5), labels)
