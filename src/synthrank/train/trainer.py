"""List-wise bi-encoder training on Hugging Face's ``Trainer``.

``RankingTrainer.compute_loss`` embeds the batch's queries [Q, H] and passages [Q*G, H],
gathers both across processes (under torchrun/DDP) with gradients flowing into the local
slice, scores every query against every passage (dot product; the temperature lives in the
loss) and calls a loss from :mod:`synthrank.losses` with the labels [Q_global, G].

DDP gradient scale. Every rank computes the *same* global loss L, but autograd reaches the
parameters only through its own slice, so rank r holds g_r = dL/dtheta through slice r; the
true gradient is sum_r g_r. DDP averages gradients over the W ranks, so each local slice's
gradient is multiplied by W (:func:`gather_with_grad`): mean_r(W g_r) = sum_r g_r. The loss
value itself is left unscaled, so logged losses equal the single-process ones.

GradCache (``chunk_size``): embeddings are first computed without a graph in chunks, the loss
and its gradient with respect to the embeddings are computed once, then each chunk is
re-embedded with a graph (replaying its random state, so dropout masks match) and
back-propagated with the cached embedding gradient. Memory grows with the chunk, not the batch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainerState

from synthrank.losses import in_batch_scores
from synthrank.models.dropout import set_attention_dropout, use_fast_dropout
from synthrank.models.embedding import embed
from synthrank.models.st_format import load_model, save_model, transformer_of
from synthrank.train.arguments import RankingTrainingArguments

log = logging.getLogger(__name__)

__all__ = ["RankingTrainer", "gather_with_grad", "gather_no_grad", "TrainResult", "train", "build_training"]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank (rank order); equal shapes required."""
    world, _ = _world()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0; the local slice keeps its graph, with its gradient scaled by W.

    The value of the local slice is unchanged (``x + (W-1)(x - x.detach())`` equals ``x``);
    its gradient is W times the gradient of the gathered loss, which DDP's averaging then
    turns into the exact single-process gradient (see the module docstring).
    """
    world, rank = _world()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[rank] = tensor + (world - 1) * (tensor - tensor.detach())
    return torch.cat(parts, dim=0)


def _split_inputs(inputs: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = next(iter(inputs.values())).shape[0]
    return [{k: v[i:i + size] for k, v in inputs.items()} for i in range(0, n, size)]


class _RandState:
    """Random state captured before a no-grad forward pass, replayed for the re-forward."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    @contextlib.contextmanager
    def replay(self):
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


class _EpochCallback(TrainerCallback):
    """Tells the dataset which epoch is starting, so its groups are re-drawn (also after --resume)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


class RankingTrainer(Trainer):
    """``Trainer`` whose model is a ``SentenceTransformer`` and whose loss is a ranking loss.

    Extra arguments: ``loss_fn`` (a :class:`synthrank.losses.Loss`), ``chunk_size`` (GradCache),
    ``forward_batch_size`` (texts per forward pass, length-sorted; see :meth:`embed`),
    ``trust_remote_code`` (for reloading a checkpoint on ``--resume``). Saves are
    sentence-transformers folders written by ``model.save``.
    """

    def __init__(self, *args, loss_fn, chunk_size: int | None = None, forward_batch_size: int | None = 32,
                 trust_remote_code: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.chunk_size = chunk_size
        self.forward_batch_size = forward_batch_size
        self.trust_remote_code = trust_remote_code
        # Our loss is a per-batch mean: the Trainer divides it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.examples_seen = 0
        self._rate_mark: tuple[float, int] | None = None
        if self.train_dataset is not None and hasattr(self.train_dataset, "set_epoch"):
            self.add_callback(_EpochCallback(self.train_dataset))
        if self.args.disable_tqdm:
            # quiet means quiet: without its progress bar the Trainer prints every log dict to stdout
            # (PrinterCallback); the logs are still kept in state.log_history and sent to report_to
            self.remove_callback(PrinterCallback)

    # -- embeddings and loss -------------------------------------------------------------------
    def embed(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sentence vectors [B, D] with the graph when grad is enabled: the module stack's output
        (:func:`synthrank.models.embedding.embed`, the function evaluation uses too), in
        length-sorted forward passes of at most ``forward_batch_size`` texts."""
        return embed(model, inputs, self.forward_batch_size)

    def loss_from_embeddings(self, queries: torch.Tensor, passages: torch.Tensor,
                             grades: torch.Tensor) -> torch.Tensor:
        """Gather across processes, score all queries against all passages, apply the loss."""
        q_all = gather_with_grad(queries)
        p_all = gather_with_grad(passages)
        labels = gather_no_grad(grades)
        scores = in_batch_scores(q_all, p_all)
        self.examples_seen += labels.shape[0]
        return self.loss_fn(scores, labels.to(scores.dtype))

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        queries = self.embed(model, inputs["query"])
        passages = self.embed(model, inputs["passage"])
        loss = self.loss_from_embeddings(queries, passages, inputs["grades"])
        return (loss, {"queries": queries, "passages": passages}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._rate_mark is None:
            self._rate_mark = (time.perf_counter(), self.examples_seen)
        if not self.chunk_size:
            return super().training_step(model, inputs, num_items_in_batch)
        return self._grad_cache_step(model, inputs)

    def _grad_cache_step(self, model, inputs) -> torch.Tensor:
        model.train()
        inputs = self._prepare_inputs(inputs)
        chunks = {kind: _split_inputs(inputs[kind], self.chunk_size) for kind in ("query", "passage")}
        states: dict[str, list[_RandState]] = {"query": [], "passage": []}
        cached: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for kind in ("query", "passage"):
                reps = []
                for chunk in chunks[kind]:
                    states[kind].append(_RandState())
                    with self.compute_loss_context_manager():
                        reps.append(self.embed(model, chunk))
                cached[kind] = torch.cat(reps).detach().requires_grad_(True)
        with self.compute_loss_context_manager():
            loss = self.loss_from_embeddings(cached["query"], cached["passage"], inputs["grades"])
        loss = loss / self.current_gradient_accumulation_steps
        loss.backward()
        pieces = [(chunk, state, grad)
                  for kind in ("query", "passage")
                  for chunk, state, grad in zip(chunks[kind], states[kind],
                                                cached[kind].grad.split(self.chunk_size))]
        for index, (chunk, state, grad) in enumerate(pieces):
            last = index == len(pieces) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(model)
            with sync:
                with state.replay(), self.compute_loss_context_manager():
                    reps = self.embed(model, chunk)
                self.accelerator.backward((reps.float() * grad.to(torch.float32)).sum())
        return loss.detach()

    # -- logging, flops, saving ----------------------------------------------------------------
    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._rate_mark is not None:
            now = time.perf_counter()
            then, seen = self._rate_mark
            if now > then:
                logs["examples_per_second"] = round((self.examples_seen - seen) / (now - then), 3)
            self._rate_mark = (now, self.examples_seen)
        super().log(logs, *args, **kwargs)

    def floating_point_ops(self, inputs) -> int:
        try:
            tokens = sum(int(inputs[k]["input_ids"].numel()) for k in ("query", "passage"))
            return 6 * tokens * transformer_of(self.model).num_parameters(exclude_embeddings=True)
        except (KeyError, TypeError, AttributeError, ValueError):
            return 0

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """A sentence-transformers folder, written by ``model.save`` (plus the Trainer's arguments)."""
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        save_model(self.accelerator.unwrap_model(self.model), output_dir, state_dict=state_dict)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))  # as Trainer._save; never loaded

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """--resume: the checkpoint is a sentence-transformers folder; load it as one."""
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        loaded = load_model(resume_from_checkpoint, device="cpu", trust_remote_code=self.trust_remote_code,
                            local_files_only=True)
        model.load_state_dict(loaded.state_dict())


# ---------------------------------------------------------------------------------------------
# Building a run from a TrainConfig


@dataclass
class TrainResult:
    output: Path
    global_step: int
    train_loss: float | None
    metrics: dict = field(default_factory=dict)
    first_loss: float | None = None


def _make_loss(config):
    """The registry loss with ``loss_params`` (see :func:`synthrank.train.config.make_loss`)."""
    from synthrank.train.config import make_loss

    return make_loss(config)


def _saved_max_length(encoder) -> int:
    """Max length recorded in the saved model: the base model's own (so that evaluation reads
    as much text as it did for the base model), or the training lengths when longer or unknown."""
    enc = encoder.config
    trained = max(int(enc.query_max_length), int(enc.passage_max_length))
    recorded = encoder.recorded_max_length if (Path(encoder.model_path) / "modules.json").is_file() else None
    return max(int(recorded), trained) if recorded else trained


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def build_training(config, callbacks: list | None = None):
    """Everything :func:`train` needs, built but not run.

    Returns ``(trainer, dataset, encoder, recipe, pools)``.
    """

    from synthrank.data.recipes import build_pools, load_training_data
    from synthrank.models import Encoder, EncoderConfig
    from synthrank.train.dataset import GroupCollator, GroupDataset

    recipe = load_training_data(config.data)
    updates = {k: getattr(config, k) for k in ("group_size", "mode", "sampling", "positive_threshold")
               if getattr(config, k) is not None}
    if updates:
        recipe = recipe.model_copy(update=updates)
    pools = build_pools(recipe)
    log.info("training data: %s", pools.describe())
    dataset = GroupDataset(pools, recipe, seed=config.seed)

    encoder = Encoder(EncoderConfig(
        model=config.model, pooling=config.pooling, normalize=config.normalize,
        query_prefix=config.query_prefix, passage_prefix=config.passage_prefix,
        query_max_length=config.query_max_length, passage_max_length=config.passage_max_length,
        trust_remote_code=config.trust_remote_code, device="cpu",
    ), show_progress=not config.quiet)
    enc = encoder.config
    model = encoder.model  # the SentenceTransformer: every module of its stack trains and is saved
    if config.attention_dropout != "model":
        set_count = set_attention_dropout(encoder.transformer, config.attention_dropout)
        if not set_count and "attention_dropout" in config.model_fields_set:
            log.warning("attention_dropout = %s: no attention dropout found in model %r; nothing changed",
                        config.attention_dropout, config.model)
    if config.dropout_masks == "fast":
        use_fast_dropout(model)
    # A pooler head (BERT, RoBERTa, ...) is not used by the embeddings: freeze it, so that DDP
    # does not wait for gradients that never come.
    for name, param in encoder.transformer.named_parameters():
        if name.startswith("pooler."):
            param.requires_grad_(False)
    if (enc.query_prefix or enc.passage_prefix) and any(
            getattr(module, "include_prompt", True) is False for module in model):
        log.warning("the model's Pooling excludes prompt tokens (include_prompt=False); training pools over "
                    "them (the collator does not mark the prefix), evaluation does not")
    collator = GroupCollator(encoder.tokenizer, enc.query_max_length, enc.passage_max_length,
                             enc.query_prefix, enc.passage_prefix)
    # what every save records beside the modules (prompts: set by the Encoder)
    model.max_seq_length = _saved_max_length(encoder)
    model.similarity_fn_name = "cosine" if enc.normalize else "dot"
    if config.deepspeed and not deepspeed_installed():
        raise ImportError(f"train.deepspeed = {config.deepspeed!r} needs the deepspeed package: pip install deepspeed")
    args = RankingTrainingArguments.from_options(config)
    if config.loss == "ws2" and config.batch_size * args.world_size < 2:
        raise ValueError("ws2 fits a Gaussian over the queries of a batch: it needs at least 2 queries per "
                         f"step, got batch size {config.batch_size} x {args.world_size} process(es)")
    trainer = RankingTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=collator,
        processing_class=encoder.tokenizer, callbacks=callbacks, loss_fn=_make_loss(config),
        chunk_size=config.chunk_size, forward_batch_size=config.forward_batch_size,
        trust_remote_code=config.trust_remote_code,
    )
    return trainer, dataset, encoder, recipe, pools


def last_complete_checkpoint(output: str | Path) -> str | None:
    """The newest ``checkpoint-N`` that was fully written, or None.

    HF Trainer writes ``trainer_state.json`` last (after weights, optimizer, scheduler and RNG
    state), so a checkpoint whose state file parses is complete. A process killed while saving
    leaves a partial folder: it is removed here, so resuming falls back to the one before.
    """
    import re
    import shutil

    output = Path(output)
    if not output.is_dir():
        return None
    numbered = [(int(m.group(1)), p) for p in output.iterdir()
                if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    for _, folder in sorted(numbered, reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text())
            return str(folder)
        except (FileNotFoundError, json.JSONDecodeError):
            log.warning("%s: incomplete checkpoint (interrupted while saving); removing it", folder)
            shutil.rmtree(folder, ignore_errors=True)
    return None


def _resume_checkpoint(config) -> str | None:
    if config.resume is False or config.resume is None:
        return None
    if isinstance(config.resume, str) and config.resume.lower() not in ("true", "last", "latest"):
        path = Path(config.resume)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such checkpoint folder")
        return str(path)
    output = Path(config.output)
    last = last_complete_checkpoint(output)
    if last is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {output} (no complete checkpoint-* folder)")
    return last


def _check_resume_matches(record_path: Path, config, recipe_record: dict) -> None:
    """Refuse to resume a checkpoint under other training options or another recipe than the run
    that wrote it (its ``synthrank_train.json``): the result would be neither run. A checkpoint
    without that record (trained elsewhere) is resumed as asked."""
    from synthrank.train.config import resume_differences

    try:
        recorded = json.loads(record_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    differences = resume_differences(recorded.get("config", {}), config)
    then = {k: v for k, v in (recorded.get("recipe") or {}).items() if k != "path"}
    now = {k: v for k, v in recipe_record.items() if k != "path"}
    if then and then != now:
        differences.append("recipe: its sources or grouping changed")
    if differences:
        raise ValueError(f"{record_path}: cannot resume: these options differ from the run that wrote the checkpoint: "
                         f"{'; '.join(differences)}. Set them back, or train into a new --output.")


def train(config, callbacks: list | None = None) -> TrainResult:
    """Train as ``config`` says; the model is written to ``config.output`` (a sentence-transformers
    folder), checkpoints to ``config.output/checkpoint-N``."""
    resume = _resume_checkpoint(config)
    trainer, dataset, encoder, recipe, pools = build_training(config, callbacks)
    output = Path(config.output)
    recipe_record = {**recipe.model_dump(mode="json"), "path": str(recipe.origin)}
    if resume is not None:
        _check_resume_matches(output / "synthrank_train.json", config, recipe_record)
    if trainer.args.should_save:
        output.mkdir(parents=True, exist_ok=True)
        provenance = {
            "config": config.model_dump(mode="json"),
            "recipe": recipe_record,
            "data": {**pools.stats, "queries": len(dataset), "dropped_queries": dataset.dropped,
                     "passages": len(pools.passages)},
            "encoder": {k: v for k, v in vars(encoder.config).items()
                        if k in ("pooling", "normalize", "query_max_length", "passage_max_length",
                                 "query_prefix", "passage_prefix")},
            "loss": repr(trainer.loss_fn),
            "world_size": trainer.args.world_size,
        }
        (output / "synthrank_train.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    if resume is not None and config.deepspeed is None and _finished_checkpoint(resume):
        # Killed after the last step's checkpoint but before the model was written: HF's Trainer
        # would train one step past max_steps on resume; the checkpoint is the finished model.
        trainer._load_from_checkpoint(resume)
        trainer.state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        train_loss, metrics = _logged_mean_loss(trainer.state.log_history), {"finished_checkpoint": resume}
    else:
        result = trainer.train(resume_from_checkpoint=resume)
        train_loss, metrics = result.training_loss, dict(result.metrics)
    trainer.save_model(str(output))
    history = trainer.state.log_history
    first = next((h["loss"] for h in history if "loss" in h), None)
    return TrainResult(output, trainer.state.global_step, train_loss, metrics, first)


def _finished_checkpoint(checkpoint: str) -> bool:
    """Whether a checkpoint was saved at the run's last step (its state reached max_steps)."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return 0 < state.get("max_steps", 0) <= state.get("global_step", 0)


def _logged_mean_loss(history: list[dict]) -> float | None:
    """The run's mean training loss from its logs (each logged loss is the mean since the one
    before; weighted by the steps it covers), as the Trainer reports it at the end."""
    total, steps, previous = 0.0, 0, 0
    for entry in history:
        if "loss" in entry and "step" in entry:
            covered = entry["step"] - previous
            total, steps, previous = total + entry["loss"] * covered, steps + covered, entry["step"]
    return total / steps if steps else None
