"""Write the sentence-transformers files beside a saved Hugging Face model.

The folder then loads with ``SentenceTransformer(path)`` (Transformer at the root, Pooling,
optional Normalize) and with :class:`synthrank.models.Encoder` (which reads the same files),
giving the same vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from synthrank.utils import atomic_write

__all__ = ["SentenceTransformersSettings", "write_sentence_transformers_files"]

_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "last": "pooling_mode_lasttoken",
}


@dataclass(frozen=True)
class SentenceTransformersSettings:
    embedding_dimension: int
    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int = 256
    query_prefix: str = ""
    passage_prefix: str = ""
    do_lower_case: bool = False


def _write_json(path: Path, data) -> None:
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


def write_sentence_transformers_files(folder: str | Path, settings: SentenceTransformersSettings) -> None:
    """modules.json, 1_Pooling/config.json, 2_Normalize/ (if normalising), sentence_bert_config.json
    and config_sentence_transformers.json (prompts and similarity function)."""
    if settings.pooling not in _POOLING_KEYS:
        raise ValueError(f"pooling must be one of {sorted(_POOLING_KEYS)}, got {settings.pooling!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if settings.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    else:
        normalize_dir = folder / "2_Normalize"
        if normalize_dir.is_dir() and not any(normalize_dir.iterdir()):
            normalize_dir.rmdir()
    _write_json(folder / "modules.json", modules)
    # The legacy boolean keys: read by every sentence-transformers version and by synthrank's Encoder.
    pooling = {"word_embedding_dimension": settings.embedding_dimension,
               "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
               "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
               "include_prompt": True}
    pooling[_POOLING_KEYS[settings.pooling]] = True
    _write_json(folder / "1_Pooling" / "config.json", pooling)
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": settings.max_seq_length, "do_lower_case": settings.do_lower_case})
    prompts = {}
    if settings.query_prefix:
        prompts["query"] = settings.query_prefix
    if settings.passage_prefix:
        prompts["document"] = settings.passage_prefix
    _write_json(folder / "config_sentence_transformers.json", {
        "__version__": {"synthrank": _version()},
        "prompts": prompts,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if settings.normalize else "dot",
    })


def _version() -> str:
    from synthrank import __version__

    return __version__
