"""RankingTrainer on a tiny random BERT: loss layout, GradCache gradients, save format, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from synthrank.train.config import load_train_config

from train_helpers import make_tiny_model, write_recipe


def config_for(tmp_path, model, beir, **overrides):
    recipe = write_recipe(tmp_path / "recipe.json", {"group_size": 3, "sources": [{"dataset": str(beir)}]})
    base = dict(data=str(recipe), output=str(tmp_path / "out"), model=str(model), batch_size=4,
                query_max_length=16, passage_max_length=16, lr=1e-3, logging_steps=1, quiet=True)
    return load_train_config(None, {**base, **overrides})


def first_batch(trainer, dataset, n=4):
    return trainer.data_collator([dataset[i] for i in range(n)])


def test_scores_and_labels_follow_the_query_major_layout(tmp_path, tiny_model, toy_beir):
    from synthrank.losses import get_loss
    from synthrank.models import Encoder, EncoderConfig
    from synthrank.train.trainer import build_training

    trainer, dataset, *_ = build_training(config_for(tmp_path, tiny_model, toy_beir, temperature=0.5))
    items = [dataset[i] for i in range(4)]
    batch = trainer.data_collator(items)
    captured = {}
    loss_fn = trainer.loss_fn

    def spy(scores, labels):
        captured["scores"], captured["labels"] = scores.detach(), labels
        return loss_fn(scores, labels)

    trainer.loss_fn = spy
    loss = trainer.compute_loss(trainer.model, batch)
    scores, labels = captured["scores"], captured["labels"]
    assert scores.shape == (4, 12) and labels.shape == (4, 3)

    # independent: embed every text on its own (no padding) and take dot products
    encoder = Encoder(EncoderConfig(model=str(tiny_model), dtype="float32", device="cpu",
                                    query_max_length=16, passage_max_length=16))
    q = encoder.embed(encoder.tokenize([it["query"] for it in items], "query")).detach()
    expected = torch.zeros(4, 12)
    for j, text in enumerate(p for it in items for p in it["passages"]):
        vec = encoder.embed(encoder.tokenize([text], "passage"))[0].detach()
        expected[:, j] = q @ vec
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    assert labels.tolist() == [it["labels"] for it in items]
    direct = get_loss("ws2", temperature=0.5)(expected, torch.tensor([it["labels"] for it in items]))
    assert loss.item() == pytest.approx(direct.item(), rel=1e-4)


def _grads(trainer, batch):
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.training_step(trainer.model, batch)
    return loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss", ["ws2", "infonce"])
def test_grad_cache_gives_the_unchunked_gradients(tmp_path, tiny_model, toy_beir, loss):
    from synthrank.train.trainer import build_training

    plain, dataset, *_ = build_training(config_for(tmp_path, tiny_model, toy_beir, loss=loss))
    chunked, *_ = build_training(config_for(tmp_path, tiny_model, toy_beir, loss=loss, chunk_size=5))
    batch = first_batch(plain, dataset)
    loss_a, grads_a = _grads(plain, batch)
    loss_b, grads_b = _grads(chunked, batch)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    assert any(".pooler." in name for name, _ in plain.model.named_parameters())
    assert not any(".pooler." in name for name in grads_a)  # the unused pooler is frozen
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-7, rtol=1e-4, msg=name)
    assert max(g.abs().max().item() for g in grads_a.values()) > 0


def test_grad_cache_replays_dropout(tmp_path, toy_beir):
    """With dropout on, each chunk's re-forward must reuse the masks of its no-grad pass.

    Reference: the same chunked forward passes, drawn from the same seed in the same order, but
    with a graph and one ordinary backward. Without the random-state replay the re-forward would
    draw fresh masks and the gradients would differ.
    """
    from synthrank.train.trainer import _split_inputs, build_training

    model = make_tiny_model(tmp_path / "dropout-model", dropout=0.3)
    trainer, dataset, *_ = build_training(config_for(tmp_path, model, toy_beir, chunk_size=3))
    batch = first_batch(trainer, dataset)
    torch.manual_seed(0)
    loss_a, grads_a = _grads(trainer, batch)

    trainer.model.zero_grad()
    trainer.model.train()
    torch.manual_seed(0)
    reps = {kind: torch.cat([trainer.embed(trainer.model, chunk) for chunk in _split_inputs(batch[kind], 3)])
            for kind in ("query", "passage")}
    loss_b = trainer.loss_from_embeddings(reps["query"], reps["passage"], batch["grades"])
    loss_b.backward()
    assert loss_a == pytest.approx(loss_b.item(), rel=1e-6)
    for name, grad in grads_a.items():
        param = dict(trainer.model.named_parameters())[name]
        torch.testing.assert_close(grad, param.grad, atol=1e-7, rtol=1e-4, msg=name)

    trainer.model.zero_grad()
    torch.manual_seed(1)
    loss_c, _ = _grads(trainer, batch)
    assert loss_c != pytest.approx(loss_a, rel=1e-6)  # dropout is really on


def test_loss_without_temperature_and_unknown_loss(tmp_path, tiny_model, toy_beir):
    from synthrank.train.trainer import _make_loss

    assert _make_loss(config_for(tmp_path, tiny_model, toy_beir, loss="ws2", temperature=0.1)).temperature == 0.1
    assert _make_loss(config_for(tmp_path, tiny_model, toy_beir, loss="margin_mse")) is not None
    with pytest.raises(ValueError, match="unknown loss"):
        _make_loss(config_for(tmp_path, tiny_model, toy_beir, loss="nope"))


def test_gather_is_identity_on_one_process():
    from synthrank.train.trainer import gather_no_grad, gather_with_grad

    x = torch.randn(3, 4, requires_grad=True)
    y = gather_with_grad(x)
    assert y is x and gather_no_grad(x) is x


@pytest.mark.parametrize("pooling, normalize", [("mean", True), ("cls", False)])
def test_trained_model_loads_in_sentence_transformers_and_encoder(tmp_path, tiny_model, toy_beir, pooling, normalize):
    from sentence_transformers import SentenceTransformer

    from synthrank.models import Encoder, EncoderConfig
    from synthrank.train.trainer import train

    config = config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1, pooling=pooling,
                        normalize=normalize, query_prefix="query: ", passage_prefix="passage: ")
    result = train(config)
    out = result.output
    assert result.global_step == 2 and np.isfinite(result.first_loss)
    assert (out / "model.safetensors").is_file() and (out / "checkpoint-2" / "model.safetensors").is_file()
    st = SentenceTransformer(str(out), device="cpu")
    ours = Encoder(EncoderConfig(model=str(out), dtype="float32", device="cpu"))
    assert ours.config.pooling == pooling and ours.config.normalize is normalize
    assert st.max_seq_length == ours.config.passage_max_length == 32  # the base model's, not the training length (16)
    assert st.prompts["query"] == ours.config.query_prefix == "query: "
    assert st.prompts["document"] == ours.config.passage_prefix == "passage: "
    assert st.similarity_fn_name == ("cosine" if normalize else "dot")
    provenance = json.loads((out / "synthrank_train.json").read_text())
    assert provenance["config"]["loss"] == "ws2" and provenance["data"]["queries"] == 12

    texts = ["protein cell gene", "a longer text about vaccine trial dose risk and effects in humans " * 3]
    for kind, prompt in (("query", "query"), ("passage", "document")):
        a = st.encode(texts, prompt_name=prompt, convert_to_numpy=True)
        b = ours.encode(texts, kind, show_progress=False)
        np.testing.assert_allclose(a, b, atol=1e-5)
    norms = np.linalg.norm(b, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) == normalize
    # the weights really changed
    from safetensors.torch import load_file

    before, after = load_file(tiny_model / "model.safetensors"), load_file(out / "model.safetensors")
    assert max((before[k] - after[k]).abs().max().item() for k in before if not k.startswith("pooler")) > 1e-5


def test_cli_train_with_config_file_and_overrides(tmp_path, tiny_model, toy_beir):
    from typer.testing import CliRunner
    import typer

    from synthrank.train.cli import train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("other")(lambda: None)
    recipe = write_recipe(tmp_path / "recipe.json", {"group_size": 2, "sources": [{"dataset": str(toy_beir)}]})
    config = tmp_path / "train.toml"
    config.write_text(f'data = "recipe.json"\noutput = "out"\nmodel = "{tiny_model}"\nbatch_size = 3\n'
                      f'max_steps = 1\nquiet = true\nmax_grad_norm = 0.5\n')
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--max-steps", "2", "--max-length", "12",
                                      "--loss", "infonce", "--group-size", "3", "--loss-param", "positive_threshold=2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{\n"):])
    assert summary["global_step"] == 2
    provenance = json.loads((tmp_path / "out" / "synthrank_train.json").read_text())
    assert provenance["config"]["batch_size"] == 3 and provenance["config"]["max_grad_norm"] == 0.5
    assert provenance["config"]["loss_params"] == {"positive_threshold": 2}
    assert provenance["recipe"]["group_size"] == 3 and provenance["encoder"]["passage_max_length"] == 12
    assert "positive_threshold=2" in provenance["loss"]
    assert recipe.is_file()

    bad = tmp_path / "bad.toml"
    bad.write_text('data = "recipe.json"\noutput = "o"\nbatch_size = 0\n')
    result = CliRunner().invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "batch_size" in result.output
    result = CliRunner().invoke(app, ["train", "--output", str(tmp_path / "x")])
    assert result.exit_code == 2 and "data" in result.output
    result = CliRunner().invoke(app, ["train", "--data", str(recipe), "--output", str(tmp_path / "fresh"),
                                      "--model", str(tiny_model), "--resume"])
    assert result.exit_code == 2 and "no checkpoint" in result.output


def test_ws2_needs_two_queries_per_step(tmp_path, tiny_model, toy_beir):
    from synthrank.train.trainer import build_training

    with pytest.raises(ValueError, match="at least 2 queries"):
        build_training(config_for(tmp_path, tiny_model, toy_beir, batch_size=1))
    build_training(config_for(tmp_path, tiny_model, toy_beir, batch_size=1, loss="infonce"))


def test_length_sorted_forward_passes_equal_one_padded_pass(tmp_path, tiny_model, toy_beir):
    from synthrank.train.trainer import build_training

    trainer, dataset, *_ = build_training(config_for(tmp_path, tiny_model, toy_beir, passage_max_length=32))
    items = [dataset[i] for i in range(4)]
    for item, extra in zip(items, (0, 5, 12, 20)):  # mixed lengths
        item["passages"] = [p + " gene" * extra for p in item["passages"]]
    batch = trainer.data_collator(items)
    trainer.forward_batch_size = None
    whole = trainer.embed(trainer.model, batch["passage"])
    trainer.forward_batch_size = 5
    pieces = trainer.embed(trainer.model, batch["passage"])
    assert pieces.shape == whole.shape == (12, 32)
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=1e-5)
    pieces.sum().backward()  # the graph reaches the weights through the re-ordering
    from synthrank.models.st_format import transformer_of

    assert transformer_of(trainer.model).embeddings.word_embeddings.weight.grad is not None


def _dense_model(tmp_path, tiny_model):
    """The tiny model with a Dense(32 -> 16) between Pooling and Normalize, saved by sentence-transformers."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize

    model = SentenceTransformer(str(tiny_model), device="cpu")
    del model[2]  # Normalize
    torch.manual_seed(2)
    model.append(Dense(32, 16))
    model.append(Normalize())
    model.save(str(tmp_path / "dense-base"), create_model_card=False)
    return tmp_path / "dense-base"


def test_a_trained_dense_model_is_the_one_sentence_transformers_loads(tmp_path, tiny_model, toy_beir):
    """The whole stack trains (the Dense weights move) and the saved folder gives, under
    SentenceTransformer(path).encode, the vectors synthrank's encoder gives."""
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from synthrank.models import Encoder, EncoderConfig
    from synthrank.train.trainer import train

    base = _dense_model(tmp_path, tiny_model)
    result = train(config_for(tmp_path, base, toy_beir, max_steps=2, save_steps=100, loss="infonce"))
    out = result.output
    assert result.global_step == 2
    st = SentenceTransformer(str(out), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Dense", "Normalize"]
    texts = ["protein cell gene", "a longer text about vaccine trial dose risk and effects in humans " * 3, "x"]
    ours = Encoder(EncoderConfig(model=str(out), dtype="float32", device="cpu", batch_tokens=32))
    for kind, prompt in (("query", "query"), ("passage", "document")):
        a = st.encode(texts, prompt_name=prompt, convert_to_numpy=True)
        b = ours.encode(texts, kind, show_progress=False)
        assert a.shape == b.shape == (3, 16)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() >= 0.9999
    before, after = load_file(base / "2_Dense" / "model.safetensors"), load_file(out / "2_Dense" / "model.safetensors")
    assert (before["linear.weight"] - after["linear.weight"]).abs().max().item() > 1e-5


def test_resume_reloads_the_checkpoint_weights(tmp_path, tiny_model, toy_beir):
    """--resume: a checkpoint (a sentence-transformers folder) is loaded back into the trained model."""
    from synthrank.train.trainer import build_training

    trainer, *_ = build_training(config_for(tmp_path, _dense_model(tmp_path, tiny_model), toy_beir))
    trainer.save_model(str(tmp_path / "ckpt"))
    saved = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with torch.no_grad():
        for param in trainer.model.parameters():
            param.add_(1.0)
    trainer._load_from_checkpoint(str(tmp_path / "ckpt"))
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)


@pytest.mark.parametrize("attention_dropout, expected", [("model", 0.2), (0.0, 0.0), (0.05, 0.05)])
def test_attention_dropout_reaches_the_trained_model_and_not_its_saved_config(tmp_path, toy_beir,
                                                                             attention_dropout, expected):
    from synthrank.train.trainer import build_training, train

    model = make_tiny_model(tmp_path / "dropout-model", dropout=0.2)
    options = {} if attention_dropout == 0.0 else {"attention_dropout": attention_dropout}  # 0.0: the default
    config = config_for(tmp_path, model, toy_beir, **options)
    trainer, *_ = build_training(config)
    probabilities = {name: module.p for name, module in trainer.model.named_modules()
                     if isinstance(module, torch.nn.Dropout)}
    attention = [p for name, p in probabilities.items() if name.endswith("attention.self.dropout")]
    hidden = [p for name, p in probabilities.items() if not name.endswith("attention.self.dropout")]
    assert attention == [expected, expected] and hidden and set(hidden) == {0.2}
    result = train(config_for(tmp_path, model, toy_beir, max_steps=1, **options))
    saved = json.loads((result.output / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.2  # the model's own, for whoever trains it next


@pytest.mark.parametrize("dropout_masks", ["fast", "torch"])
def test_dropout_masks_choose_the_dropout_modules_of_the_trained_model(tmp_path, toy_beir, dropout_masks):
    """'fast' (the default) puts FastDropout in place of every plain dropout of the model it trains,
    at the same probabilities; 'torch' leaves torch's own. The saved model is the same format."""
    from synthrank.models.dropout import FastDropout
    from synthrank.train.trainer import build_training, train

    model = make_tiny_model(tmp_path / "dropout-model", dropout=0.2)
    options = {} if dropout_masks == "fast" else {"dropout_masks": dropout_masks}
    trainer, *_ = build_training(config_for(tmp_path, model, toy_beir, **options))
    dropouts = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    fast = [m for m in dropouts if isinstance(m, FastDropout)]
    assert dropouts and len(fast) == (len(dropouts) if dropout_masks == "fast" else 0)
    assert {m.p for m in dropouts if m.p} == {0.2}
    result = train(config_for(tmp_path, model, toy_beir, max_steps=1, **options))
    assert json.loads((result.output / "synthrank_train.json").read_text())["config"]["dropout_masks"] == dropout_masks


def test_resume_refuses_a_checkpoint_trained_under_other_options(tmp_path, tiny_model, toy_beir):
    """A checkpoint resumes only under the options (and recipe) of the run that wrote it; logging,
    saving and progress may change. A record from before an option existed counts as that
    option's old behaviour (attention_dropout: the model's)."""
    from synthrank.train.trainer import train

    first = train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1))
    assert first.global_step == 2 and (first.output / "checkpoint-2").is_dir()
    with pytest.raises(ValueError, match=r"cannot resume.*batch_size: 4 -> 2; lr: 0\.001 -> 0\.01"):
        train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1, resume=True, lr=1e-2,
                         batch_size=2))
    record_path = first.output / "synthrank_train.json"
    record = json.loads(record_path.read_text())
    # same options, other logging / saving / progress: resumes from checkpoint-1 and ends at step 2
    shutil.rmtree(first.output / "checkpoint-2")
    again = train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=5, logging_steps=2,
                             quiet=False, resume=True))
    assert again.global_step == 2
    # a record written before attention_dropout existed: that run used the model's dropout
    del record["config"]["attention_dropout"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"attention_dropout: 'model' -> 0\.0"):
        train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1, resume=True))
    record_path.write_text(json.dumps(record))
    train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1, resume=True,
                     attention_dropout="model"))
    # and before dropout_masks existed: that run drew torch's masks
    record["config"]["attention_dropout"] = 0.0
    del record["config"]["dropout_masks"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"dropout_masks: 'torch' -> 'fast'"):
        train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1, resume=True))
    # another recipe over the same data path
    record["recipe"]["group_size"] = 7
    record["config"]["dropout_masks"] = "fast"
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="recipe: its sources or grouping changed"):
        train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=1, resume=True))


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_training_prints_nothing(tmp_path, tiny_model, toy_beir, capfd, quiet):
    """--quiet: no progress bar and none of the Trainer's log dicts (which it prints when its bar is
    off); the losses are still in the history. Without --quiet the bar shows them."""
    from synthrank.train.trainer import train

    capfd.readouterr()
    result = train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, quiet=quiet))
    printed = capfd.readouterr()
    assert result.first_loss is not None and result.global_step == 2
    if quiet:
        assert printed.out == "" and "'loss'" not in printed.err and "it/s" not in printed.err, printed
    else:
        assert "'loss'" in printed.out + printed.err


def test_resume_from_the_last_steps_checkpoint_trains_no_further(tmp_path, tiny_model, toy_beir):
    """Killed after the checkpoint of the last step but before the model was written: the resume
    writes that checkpoint's weights as the model (HF's Trainer alone would train one more step)."""
    from safetensors.torch import load_file

    from synthrank.train.trainer import train

    first = train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=2, logging_steps=1))
    finished = load_file(first.output / "model.safetensors")
    (first.output / "model.safetensors").unlink()  # the kill
    resumed = train(config_for(tmp_path, tiny_model, toy_beir, max_steps=2, save_steps=2, logging_steps=1,
                               resume=True))
    assert resumed.global_step == 2 and resumed.metrics == {"finished_checkpoint": str(first.output / "checkpoint-2")}
    assert resumed.train_loss == pytest.approx(first.train_loss, abs=1e-3)  # logged losses are rounded
    assert resumed.first_loss == first.first_loss
    again = load_file(first.output / "model.safetensors")
    assert again.keys() == finished.keys()
    for key in finished:
        torch.testing.assert_close(again[key], finished[key], msg=key)
