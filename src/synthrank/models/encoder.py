"""A bi-encoder over any local Hugging Face or sentence-transformers model folder.

The model is a ``SentenceTransformer`` (loaded by sentence-transformers, see
:mod:`synthrank.models.st_format`), so every module its folder records (Transformer, Pooling of
any mode, Dense, Normalize, ...) takes part, and a model scores here as under
``SentenceTransformer(path).encode``. :meth:`Encoder.encode` adds speed: length-sorted,
token-budget batches under inference mode, bf16 autocast where the hardware computes bf16
natively; each batch runs through :func:`synthrank.models.embedding.embed`, the same function
training calls.
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
from synthrank.models.choices import Dtype, Pooling
from synthrank.models.embedding import embed
from synthrank.models.st_format import configure, load_model, normalizes, pooling_name, stack_signature, transformer_of

log = logging.getLogger(__name__)

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
    # CPU with AVX512-BF16/AMX), float32 elsewhere. "int8" (opt-in, CPU only): the Linear layers
    # run dynamically quantized to int8 (weights per output channel, activations per batch), meant
    # for CPUs without native bf16; vectors move slightly (mean cosine 0.98 to fp32 on SciFact).
    # Training is unaffected: it runs ``embed`` on the float model.
    dtype: Dtype = "auto"
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


def _position_limit(transformer) -> int | None:
    """Most tokens the model's position table reads (RoBERTa-style tables reserve padding_idx + 1)."""
    limit = getattr(transformer.config, "max_position_embeddings", None)
    if not limit:
        return None
    for module in transformer.modules():
        padding_idx = getattr(module, "padding_idx", None)
        if isinstance(padding_idx, int) and isinstance(getattr(module, "position_embeddings", None),
                                                        torch.nn.Embedding):
            return limit - (padding_idx + 1)
    return limit


class Encoder(torch.nn.Module):
    """A :class:`sentence_transformers.SentenceTransformer` module stack, with synthrank's settings.

    ``model`` is the SentenceTransformer (Transformer, Pooling, Dense, Normalize, ... as the folder
    records them); ``transformer`` the Hugging Face model inside it; ``tokenizer`` its tokenizer.
    """

    def __init__(self, config: EncoderConfig | None = None, *, show_progress: bool = False, **overrides):
        super().__init__()
        config = replace(config or EncoderConfig(), **overrides)
        self.model_path = resolve_model_path(config.model)
        local = Path(self.model_path).is_dir()
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model = load_model(self.model_path, device=device, trust_remote_code=config.trust_remote_code,
                                    local_files_only=local or offline(), show_progress=show_progress and not local)
        except OSError as error:
            raise FileNotFoundError(
                f"could not load model {config.model!r}: {error}. Pass a local model folder, "
                f"or a bundled alias ({DEFAULT_ENCODER})."
            ) from None
        configure(self.model, pooling=config.pooling, normalize=config.normalize)
        self.model.eval()  # inference until a trainer says otherwise (no dropout)
        self.transformer = transformer_of(self.model)
        self.tokenizer = self.model.tokenizer
        prompts = dict(self.model.prompts or {})
        recorded = self.model.max_seq_length
        self.recorded_max_length = int(recorded) if isinstance(recorded, int) and 0 < recorded < 1_000_000 else None
        max_length = self.recorded_max_length or 512
        self.config = replace(
            config,
            pooling=pooling_name(self.model),
            normalize=normalizes(self.model),
            query_prefix=config.query_prefix or prompts.get("query") or "",
            passage_prefix=config.passage_prefix or prompts.get("passage") or prompts.get("document") or "",
            query_max_length=max_length if config.query_max_length is None else config.query_max_length,
            passage_max_length=max_length if config.passage_max_length is None else config.passage_max_length,
        )
        # what a save records (sentence-transformers reads "query" / "document")
        self.model.prompts = {**prompts, "query": self.config.query_prefix, "document": self.config.passage_prefix}
        self._check_max_lengths()
        if self.config.dtype == "auto":
            self.config = replace(self.config, dtype="bfloat16" if native_bf16(device) else "float32")
        if self.config.dtype == "int8" and not str(device).startswith("cpu"):
            raise ValueError(f"dtype int8 (dynamic quantization) runs on CPU only, not on {device}; "
                             "use bfloat16 or float32 there")

    def _check_max_lengths(self) -> None:
        """Lengths beyond the model's position embeddings fail deep inside the forward pass."""
        limit = _position_limit(self.transformer)
        for name in ("query_max_length", "passage_max_length"):
            value = getattr(self.config, name)
            if value < 1 or (limit and value > limit):
                raise ValueError(f"{name} (--max-length) {value}: must be between 1 and {limit or 'the model limit'}, "
                                 f"the most tokens model {self.config.model!r} can read")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def fingerprint(self) -> str:
        """Identifies weights + encoding settings; part of every embedding-cache key."""
        weights = weights_fingerprint(self.model_path) if Path(self.model_path).is_dir() else self.model_path
        settings = self.config.encoding_settings()
        stack = stack_signature(self.model)
        if stack is not None:  # absent for the plain stack, so its existing cache keys stay valid
            settings["modules"] = stack
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(f"{weights}\n{text}".encode()).hexdigest()

    def tokenize(self, texts: list[str], kind: Literal["query", "passage"]) -> dict:
        """Features for ``texts`` as ``SentenceTransformer.encode`` makes them (prefix as its prompt)."""
        prefix, max_length = self._prefix_and_length(kind)
        return self.model.preprocess(list(texts), prompt=prefix or None,
                                     processing_kwargs={"text": {"max_length": max_length}})

    def embed(self, inputs: dict) -> torch.Tensor:
        """Tokenized inputs -> sentence vectors [B, D] (:func:`synthrank.models.embedding.embed`)."""
        return embed(self.model, inputs)

    forward = embed

    def _prefix_and_length(self, kind: str) -> tuple[str, int]:
        if kind == "query":
            return self.config.query_prefix, self.config.query_max_length
        return self.config.passage_prefix, self.config.passage_max_length

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: Literal["query", "passage"] = "passage",
               show_progress: bool = True, desc: str | None = None) -> np.ndarray:
        """Embed texts; returns float32 [N, D] in input order.

        Texts are sorted by token count (longest first, so a memory problem shows at once) and
        packed into batches of at most ``batch_tokens`` padded tokens: little padding, and large
        batches of short texts. Each batch is tokenized and embedded as ``SentenceTransformer.encode``
        does it (:meth:`tokenize`, :meth:`embed`), optionally under bf16 autocast.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        prefix, max_length = self._prefix_and_length(kind)
        lengths = [len(ids) for ids in self.tokenizer(
            [prefix + t for t in texts], truncation=True, max_length=max_length, padding=False,
            return_attention_mask=False, return_token_type_ids=False)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        output = np.empty((len(texts), self.dimension), dtype=np.float32)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.dtype == "bfloat16")
        # quantized afresh for each call (a fraction of a second), so it always has the current weights
        model = quantized_int8(self.model) if self.config.dtype == "int8" else self.model
        plural = PLURALS[kind]
        with tqdm(total=len(texts), desc=desc or f"encode {plural}", unit=plural,
                  disable=not show_progress, smoothing=0.1) as bar, autocast:
            for batch in _token_budget_batches(order, lengths, self.config.batch_tokens, self.config.max_batch_size):
                vectors = embed(model, self.tokenize([texts[i] for i in batch], kind))
                output[batch] = vectors.float().cpu().numpy()
                bar.update(len(batch))
        self.model.train(was_training)
        return output


def quantized_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose Linear layers compute in int8 (``torch.ao`` dynamic quantization:
    int8 weights per output channel, activations quantized per batch, fbgemm/oneDNN kernels);
    ``model`` is untouched. Per channel, not per tensor: on MiniLM over SciFact abstracts per-tensor
    weights kept a mean cosine of 0.92 to the fp32 vectors, per-channel 0.98."""
    import copy
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated in favour of torchao
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        return quantize_dynamic(copy.deepcopy(model).float().eval(), {torch.nn.Linear: per_channel_dynamic_qconfig})


def _token_budget_batches(order: list[int], lengths: list[int], batch_tokens: int,
                          max_batch_size: int) -> list[list[int]]:
    """Split length-sorted indices (longest first) so batch_size * longest <= batch_tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]
        if current and ((len(current) + 1) * width > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
