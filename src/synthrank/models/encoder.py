"""A bi-encoder over any local Hugging Face or sentence-transformers model folder.

The same :class:`Encoder` embeds for evaluation (``encode``: length-sorted, token-budget
batches under inference mode, optional bf16) and for training (``embed``: a differentiable
forward pass on tokenized inputs). Settings a sentence-transformers folder records
(pooling, normalisation, max length, prompts) are read from it, so a model scores the same
here as under ``SentenceTransformer(path)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from synthrank.data.resolve import offline
from synthrank.models.bundled import DEFAULT_ENCODER, bundled_encoder_path, is_bundled_encoder

log = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "last"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PLURALS = {"query": "queries", "passage": "passages"}  # progress units ("queries/s")


@dataclass(frozen=True)
class EncoderConfig:
    """How text becomes a vector. ``None`` means: take it from the model folder, else a default."""

    model: str = DEFAULT_ENCODER
    pooling: Pooling | None = None
    normalize: bool | None = None
    query_prefix: str = ""
    passage_prefix: str = ""
    query_max_length: int | None = None
    passage_max_length: int | None = None
    # "auto": bf16 inference where the hardware computes it natively (CUDA with bf16, or a
    # CPU with AVX512-BF16/AMX), float32 elsewhere. Training is unaffected: it runs ``embed``.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    batch_tokens: int = 4096  # padded tokens per forward pass; bounds activation memory
    max_batch_size: int = 256
    trust_remote_code: bool = False
    device: str | None = None

    def encoding_settings(self) -> dict:
        """The settings that change vectors (used in cache fingerprints); batching excluded."""
        keys = ("pooling", "normalize", "query_prefix", "passage_prefix", "query_max_length",
                "passage_max_length", "dtype")
        return {k: v for k, v in asdict(self).items() if k in keys}


def resolve_model_path(model: str) -> str:
    """A bundled alias becomes its folder; a path is checked; anything else is a hub id."""
    if is_bundled_encoder(model):
        return str(bundled_encoder_path(model))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
        return str(path)
    # A hub id is "name" or "org/name"; anything else can only have been meant as a path.
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
    if looks_like_path or offline():
        why = "no such folder" if looks_like_path else (
            "no such folder, and HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE forbid fetching it as a hub id")
        raise FileNotFoundError(
            f"model {model!r}: {why}. A model is a local folder with config.json (e.g. a 'synthrank train' "
            f"output), a bundled alias ({DEFAULT_ENCODER}, minilm), a Hugging Face hub id ('org/name', "
            f"downloaded when online), or, for 'synthrank eval', bm25")
    return model


def read_sentence_transformers_settings(folder: str | Path) -> dict:
    """Pooling, normalisation, max length and prompts recorded in a sentence-transformers folder."""
    folder = Path(folder)
    settings: dict = {}
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return settings
    modules = json.loads(modules_file.read_text())
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling_cfg = folder / module.get("path", "") / "config.json"
            if pooling_cfg.is_file():
                cfg = json.loads(pooling_cfg.read_text())
                if cfg.get("pooling_mode_cls_token"):
                    settings["pooling"] = "cls"
                elif cfg.get("pooling_mode_lasttoken"):
                    settings["pooling"] = "last"
                elif cfg.get("pooling_mode_mean_tokens"):
                    settings["pooling"] = "mean"
        if kind.endswith("Normalize"):
            settings["normalize"] = True
    settings.setdefault("normalize", False)
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
        if max_len:
            settings["max_length"] = int(max_len)
    prompts_cfg = folder / "config_sentence_transformers.json"
    if prompts_cfg.is_file():
        prompts = json.loads(prompts_cfg.read_text()).get("prompts") or {}
        for key in ("query", "passage", "document"):
            if prompts.get(key):
                settings["passage_prefix" if key != "query" else "query_prefix"] = prompts[key]
    return settings


def weights_fingerprint(folder: str | Path) -> str:
    """SHA-256 over the weight files' names and bytes: any change to the weights changes it."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                   and "checkpoint-" not in str(p.relative_to(folder)))
    if not files:
        raise FileNotFoundError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def native_bf16(device: str) -> bool:
    """Whether bf16 matrix products run natively (fast) on this device."""
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool token states [B, T, H] into one vector per text [B, H]."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        # index of the last real token per row; works for right padding (left padding: T-1)
        last = attention_mask.sum(dim=1) - 1
        if bool((attention_mask[:, -1] == 1).all()):
            last = torch.full_like(last, hidden.shape[1] - 1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class Encoder(torch.nn.Module):
    """Tokenizer + transformer + pooling (+ optional L2 normalisation)."""

    def __init__(self, config: EncoderConfig | None = None, **overrides):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        config = replace(config or EncoderConfig(), **overrides)
        self.model_path = resolve_model_path(config.model)
        recorded = read_sentence_transformers_settings(self.model_path) if Path(self.model_path).is_dir() else {}
        max_length = recorded.get("max_length", 512)
        self.config = replace(
            config,
            pooling=config.pooling or recorded.get("pooling", "mean"),
            normalize=config.normalize if config.normalize is not None else recorded.get("normalize", False),
            query_prefix=config.query_prefix or recorded.get("query_prefix", ""),
            passage_prefix=config.passage_prefix or recorded.get("passage_prefix", ""),
            query_max_length=max_length if config.query_max_length is None else config.query_max_length,
            passage_max_length=max_length if config.passage_max_length is None else config.passage_max_length,
        )
        local_only = Path(self.model_path).is_dir() or offline()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.model_path, trust_remote_code=config.trust_remote_code, local_files_only=local_only
            )
            self.model = AutoModel.from_pretrained(
                self.model_path, trust_remote_code=config.trust_remote_code, local_files_only=local_only
            )
        except OSError as error:
            raise FileNotFoundError(
                f"could not load model {config.model!r}: {error}. Pass a local model folder, "
                f"or a bundled alias ({DEFAULT_ENCODER})."
            ) from None
        self._check_max_lengths()
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(device)
        if self.config.dtype == "auto":
            self.config = replace(self.config, dtype="bfloat16" if native_bf16(device) else "float32")

    def _check_max_lengths(self) -> None:
        """Lengths beyond the model's position embeddings fail deep inside the forward pass."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if limit and tokenizer_limit and tokenizer_limit < limit:
            limit = tokenizer_limit  # RoBERTa-style models reserve position slots
        for name in ("query_max_length", "passage_max_length"):
            value = getattr(self.config, name)
            if value < 1 or (limit and value > limit):
                raise ValueError(f"{name} (--max-length) {value}: must be between 1 and {limit or 'the model limit'}, "
                                 f"the most tokens model {self.config.model!r} can read")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fingerprint(self) -> str:
        """Identifies weights + encoding settings; part of every embedding-cache key."""
        weights = weights_fingerprint(self.model_path) if Path(self.model_path).is_dir() else self.model_path
        settings = json.dumps(self.config.encoding_settings(), sort_keys=True)
        return hashlib.sha256(f"{weights}\n{settings}".encode()).hexdigest()

    def tokenize(self, texts: list[str], kind: Literal["query", "passage"]) -> dict[str, torch.Tensor]:
        prefix, max_length = self._prefix_and_length(kind)
        return self.tokenizer([prefix + t for t in texts], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable forward pass: tokenized inputs -> pooled (normalised) vectors [B, H]."""
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        hidden = self.model(**inputs).last_hidden_state
        vectors = pool(hidden, inputs["attention_mask"], self.config.pooling)
        if self.config.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors

    forward = embed

    def _prefix_and_length(self, kind: str) -> tuple[str, int]:
        if kind == "query":
            return self.config.query_prefix, self.config.query_max_length
        return self.config.passage_prefix, self.config.passage_max_length

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: Literal["query", "passage"] = "passage",
               show_progress: bool = True, desc: str | None = None) -> np.ndarray:
        """Embed texts; returns float32 [N, H] in input order.

        Texts are tokenized once, sorted by token count (longest first, so a memory problem
        shows at once) and packed into batches of at most ``batch_tokens`` padded tokens:
        little padding, and large batches of short texts.
        """
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        prefix, max_length = self._prefix_and_length(kind)
        encoded = self.tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length,
                                 padding=False, return_attention_mask=False)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        output = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.dtype == "bfloat16")
        plural = PLURALS[kind]
        with tqdm(total=len(texts), desc=desc or f"encode {plural}", unit=plural,
                  disable=not show_progress, smoothing=0.1) as bar, autocast:
            for batch in _token_budget_batches(order, encoded, self.config.batch_tokens, self.config.max_batch_size):
                width = len(encoded[batch[0]])
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, index in enumerate(batch):
                    tokens = encoded[index]
                    ids[row, : len(tokens)] = torch.tensor(tokens)
                    mask[row, : len(tokens)] = 1
                inputs = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in self.tokenizer.model_input_names:
                    inputs["token_type_ids"] = torch.zeros_like(ids)
                vectors = self.embed(inputs)
                output[batch] = vectors.float().cpu().numpy()
                bar.update(len(batch))
        self.model.train(was_training)
        return output


def _token_budget_batches(order: list[int], encoded: list[list[int]], batch_tokens: int,
                          max_batch_size: int) -> list[list[int]]:
    """Split length-sorted indices (longest first) so batch_size * longest <= batch_tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = len(encoded[current[0]]) if current else len(encoded[index])
        if current and ((len(current) + 1) * width > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
