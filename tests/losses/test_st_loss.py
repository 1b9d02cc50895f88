"""synthrank.losses.st.ListwiseLoss: the registry losses inside sentence-transformers' own trainer."""

from __future__ import annotations

import pytest
import torch

from synthrank.losses import get_loss, in_batch_scores
from synthrank.losses.st import ListwiseLoss

Q, G, D = 5, 4, 8

LOSSES = [
    ("ws2", {"temperature": 0.05, "label_temperature": 0.25}),
    ("kl", {"temperature": 0.1, "label_temperature": 0.5}),
    ("emd", {"temperature": 0.1}),
    ("infonce", {"temperature": 0.05, "positive_threshold": 2}),
    ("ranknet", {"temperature": 0.5}),
]


def _columns(seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    queries = torch.randn(Q, D, generator=gen)
    columns = [torch.randn(Q, D, generator=gen) for _ in range(G)]
    labels = torch.randint(0, 4, (Q, G), generator=gen).float()
    labels[:, 0] = 3.0  # every query has a top-graded passage
    return queries, columns, labels


def _reference_scores(queries: torch.Tensor, columns: list[torch.Tensor]) -> torch.Tensor:
    """[Q, Q*G], written out: column j*G + g is row j's passage column g (query-major blocks)."""
    scores = torch.empty(Q, Q * G)
    for i in range(Q):
        for j in range(Q):
            for g in range(G):
                scores[i, j * G + g] = queries[i] @ columns[g][j]
    return scores


@pytest.mark.parametrize("name, params", LOSSES)
def test_loss_equals_the_registry_loss_on_the_same_scores(name, params):
    queries, columns, labels = _columns()
    st_loss = ListwiseLoss(torch.nn.Identity(), name, **params)
    value = st_loss.compute_loss_from_embeddings([queries, *columns], labels)
    expected = get_loss(name, **params)(_reference_scores(queries, columns), labels)
    assert torch.allclose(value, expected), (value, expected)
    # a built Loss works the same as an alias with parameters
    built = ListwiseLoss(torch.nn.Identity(), get_loss(name, **params))
    assert torch.allclose(built.compute_loss_from_embeddings([queries, *columns], labels), expected)


def test_gradients_reach_every_column():
    queries, columns, labels = _columns(1)
    leaves = [t.clone().requires_grad_(True) for t in (queries, *columns)]
    ListwiseLoss(torch.nn.Identity(), "ws2", temperature=0.05).compute_loss_from_embeddings(leaves, labels).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in leaves)


def test_bad_inputs_are_clear_errors():
    queries, columns, labels = _columns()
    loss = ListwiseLoss(torch.nn.Identity(), "kl")
    with pytest.raises(ValueError, match=r"labels of shape \(batch size, passage columns\) = \(5, 4\)"):
        loss.compute_loss_from_embeddings([queries, *columns], labels[:, :3])
    with pytest.raises(ValueError, match="needs a label column"):
        loss.compute_loss_from_embeddings([queries, *columns], None)
    with pytest.raises(ValueError, match="at least one passage column"):
        loss.compute_loss_from_embeddings([queries], labels)
    with pytest.raises(ValueError, match="G rows per query"):
        in_batch_scores(queries, torch.randn(Q * G - 1, D))
    with pytest.raises(ValueError, match="same D"):
        in_batch_scores(queries, torch.randn(Q * G, D + 1))
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        ListwiseLoss(torch.nn.Identity(), "nope")
    with pytest.raises(ValueError, match="not both"):
        ListwiseLoss(torch.nn.Identity(), get_loss("kl"), temperature=0.1)


def test_config_dict_names_the_loss_and_its_parameters():
    loss = ListwiseLoss(torch.nn.Identity(), "ws2", temperature=0.05, label_temperature=0.25)
    assert loss.get_config_dict() == {"loss": "ws2", "temperature": 0.05, "label_temperature": 0.25}


# Eight queries, each with passages of grades 3, 2, 1, 0 (in that column order).
TOPICS = [
    ("how do vaccines train the immune system",
     "Vaccines expose the immune system to an antigen so it builds antibodies and memory cells.",
     "Vaccines are given by injection, often in the upper arm.",
     "The immune system includes white blood cells and lymph nodes.",
     "Bananas are a good source of potassium."),
    ("why is the sky blue",
     "Sunlight scatters off air molecules, and blue light scatters most (Rayleigh scattering).",
     "The sky looks red at sunset because light travels through more air.",
     "The atmosphere is mostly nitrogen and oxygen.",
     "Chess openings include the Sicilian defence."),
    ("what causes tides on earth",
     "Tides are caused by the Moon's gravity pulling on the oceans.",
     "High tide and low tide alternate about twice a day.",
     "The Moon orbits the Earth every 27 days.",
     "Bread rises because yeast produces carbon dioxide."),
    ("how do plants make food",
     "Plants make sugar from carbon dioxide and water using sunlight in photosynthesis.",
     "Chlorophyll gives leaves their green colour.",
     "Plants need soil and water to grow.",
     "The stock market fell sharply on Monday."),
    ("what is the boiling point of water",
     "Water boils at 100 degrees Celsius at sea level.",
     "At high altitude water boils at a lower temperature.",
     "Water freezes at 0 degrees Celsius.",
     "Penguins live in the southern hemisphere."),
    ("how does insulin control blood sugar",
     "Insulin lets cells take up glucose, lowering blood sugar levels.",
     "Diabetes is a disease in which blood sugar is too high.",
     "The pancreas is an organ near the stomach.",
     "Jazz originated in New Orleans."),
    ("what do bees produce",
     "Honey bees produce honey and beeswax.",
     "Bees collect nectar and pollen from flowers.",
     "Wasps are insects related to bees.",
     "The Eiffel Tower is in Paris."),
    ("how fast does light travel",
     "Light travels at about 300,000 kilometres per second in a vacuum.",
     "Light takes about eight minutes to reach Earth from the Sun.",
     "Sound travels much slower than light.",
     "Tomatoes are botanically fruits."),
]


def _top_minus_bottom(model) -> torch.Tensor:
    """Per query: cosine of its grade-3 passage minus that of its grade-0 passage."""
    with torch.no_grad():
        q = model.encode([t[0] for t in TOPICS], convert_to_tensor=True, normalize_embeddings=True)
        top = model.encode([t[1] for t in TOPICS], convert_to_tensor=True, normalize_embeddings=True)
        bottom = model.encode([t[4] for t in TOPICS], convert_to_tensor=True, normalize_embeddings=True)
    return (q * top).sum(-1) - (q * bottom).sum(-1)


def test_trains_a_bi_encoder_in_sentence_transformers_trainer(tmp_path):
    """Three steps of SentenceTransformerTrainer on the bundled MiniLM with graded groups: the loss is
    finite, the weights move, and the grade-3 passage gains on the grade-0 one (with the grades
    reversed, the same run loses 0.09 of mean margin instead of gaining 0.06)."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)

    from synthrank.models import bundled_encoder_path

    model = SentenceTransformer(str(bundled_encoder_path()), device="cpu")
    model.max_seq_length = 32
    data = Dataset.from_dict({
        "query": [t[0] for t in TOPICS],
        **{f"passage_{g}": [t[1 + g] for t in TOPICS] for g in range(G)},
        "label": [[3.0, 2.0, 1.0, 0.0]] * len(TOPICS),
    })
    before_margin = _top_minus_bottom(model)
    before_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=len(TOPICS), max_steps=3, learning_rate=1e-4,
        warmup_steps=0, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
        use_cpu=True,
    )
    loss = ListwiseLoss(model, "ws2", temperature=0.05, label_temperature=0.25)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    trainer.train()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(p.detach(), before_weights[n]) for n, p in model.named_parameters())
    gain = (_top_minus_bottom(model) - before_margin).mean().item()
    assert gain > 0.02, f"mean cosine margin of grade 3 over grade 0 moved by {gain:+.3f}"
