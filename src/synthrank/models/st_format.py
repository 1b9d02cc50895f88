"""The sentence-transformers model format, read and written by sentence-transformers itself.

A model is a :class:`sentence_transformers.SentenceTransformer`: its module stack
(Transformer, Pooling, Dense, Normalize, ...) as the folder's ``modules.json`` records it.
Loading goes through ``SentenceTransformer(path)``, saving through ``model.save(path)``, so a
model synthrank evaluates or trains is the model sentence-transformers sees, module for module.

What synthrank adds: pooling / normalisation overrides (:func:`configure`), a save that also
takes a gathered ``state_dict`` (DeepSpeed ZeRO-3, where the live parameters are partitioned),
and silence from Hugging Face progress bars on load and save (:func:`hf_progress_bars`).

Code and pickles: ``trust_remote_code`` is passed through and off by default; weights are read
by sentence-transformers / transformers, which use safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["POOLING_MODES", "configure", "hf_progress_bars", "load_model", "normalizes", "pooling_name",
           "save_model", "stack_signature", "transformer_of"]

# synthrank's pooling names -> sentence-transformers' Pooling modes
POOLING_MODES = {"mean": "mean", "cls": "cls", "last": "lasttoken", "max": "max",
                 "weightedmean": "weightedmean", "mean_sqrt_len_tokens": "mean_sqrt_len_tokens"}
_NAMES = {mode: name for name, mode in POOLING_MODES.items()}


@contextlib.contextmanager
def hf_progress_bars(enabled: bool):
    """Within the block, transformers' and huggingface_hub's progress bars ("Loading weights",
    "Writing model shards", downloads) are shown only if ``enabled``; the previous state returns after."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    was_transformers = hf_logging.is_progress_bar_enabled()
    was_hub = not hub_utils.are_progress_bars_disabled()
    if enabled or not (was_transformers or was_hub):
        yield
        return
    hf_logging.disable_progress_bar()  # also huggingface_hub's
    try:
        yield
    finally:
        if was_transformers:
            hf_logging.enable_progress_bar()
        if was_hub:
            hub_utils.enable_progress_bars()
        else:
            hub_utils.disable_progress_bars()


def load_model(path: str, *, device: str = "cpu", trust_remote_code: bool = False,
               local_files_only: bool = False, show_progress: bool = False):
    """``SentenceTransformer(path)``: a sentence-transformers folder gives its recorded module stack;
    a plain Hugging Face model gets sentence-transformers' default (Transformer + mean pooling,
    last-token pooling for causal LMs)."""
    from sentence_transformers import SentenceTransformer

    plain = not (Path(path) / "modules.json").is_file() and Path(path).is_dir()
    st_logger = logging.getLogger("sentence_transformers")
    level = st_logger.level
    if plain:  # "No sentence-transformers model found ... Creating a new one": said here instead
        log.info("%s: a plain Hugging Face model; sentence-transformers' default pooling applies", path)
        st_logger.setLevel(logging.ERROR)
    try:
        with hf_progress_bars(show_progress):
            return SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code,
                                       local_files_only=local_files_only)
    finally:
        st_logger.setLevel(level)


def transformer_of(model):
    """The Hugging Face model inside the first (Transformer) module."""
    first = model[0]
    inner = getattr(first, "auto_model", None)
    if inner is None:
        raise ValueError(f"the first module of this model is {type(first).__name__}, not a Transformer")
    return inner


def _pooling_modules(model) -> list[tuple[str, object]]:
    from sentence_transformers.sentence_transformer.modules import Pooling

    return [(name, module) for name, module in model._modules.items() if isinstance(module, Pooling)]


def pooling_name(model) -> str:
    """synthrank's name for the model's pooling ('mean', 'cls', 'last', 'max', ...); 'a+b' for a
    concatenation, 'none' when the stack has no Pooling module."""
    pools = _pooling_modules(model)
    if not pools:
        return "none"
    mode = pools[0][1].pooling_mode
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    return "+".join(_NAMES.get(m, m) for m in modes)


def normalizes(model) -> bool:
    from sentence_transformers.base.modules import Normalize

    return isinstance(model[len(model) - 1], Normalize)


def configure(model, pooling: str | None = None, normalize: bool | None = None) -> None:
    """Set the pooling mode and/or a final L2 normalisation in place (``None``: keep the model's)."""
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    if pooling is not None and pooling != pooling_name(model):
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling {pooling!r}: must be one of {sorted(POOLING_MODES)}")
        pools = _pooling_modules(model)
        if len(pools) != 1:
            raise ValueError(f"cannot set pooling={pooling!r}: the model has {len(pools)} Pooling modules")
        name, old = pools[0]
        model._modules[name] = Pooling(old.embedding_dimension, POOLING_MODES[pooling],
                                       include_prompt=old.include_prompt)
    if normalize is not None and normalize != normalizes(model):
        if normalize:
            model.append(Normalize())
        else:
            if any(isinstance(m, Normalize) for m in list(model)[:-1]):
                raise ValueError("cannot switch normalisation off: a Normalize module sits inside the stack")
            del model[len(model) - 1]


def stack_signature(model) -> list | None:
    """A description of the module stack for cache keys, or None for the plain
    Transformer -> Pooling (-> Normalize) stack (whose pooling / normalisation the encoder
    settings already name). Anything else (Dense, include_prompt=False, ...) changes vectors
    beyond those settings, so it must change the key."""
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = list(model)
    plain = (len(modules) in (2, 3) and getattr(modules[0], "auto_model", None) is not None
             and isinstance(modules[1], Pooling) and modules[1].include_prompt
             and all(isinstance(m, Normalize) for m in modules[2:]))
    if plain and getattr(model, "truncate_dim", None) is None:
        return None
    described = []
    for module in modules[1:]:
        try:
            config = module.get_config_dict()
        except AttributeError:
            config = {}
        described.append([type(module).__name__, json.loads(json.dumps(config, sort_keys=True, default=str))])
    return [described, getattr(model, "truncate_dim", None)]


def save_model(model, folder: str | Path, state_dict: dict | None = None) -> None:
    """``model.save(folder)`` (no model card), quietly. With ``state_dict`` (a full, gathered one, as
    the Trainer passes under DeepSpeed ZeRO-3) its tensors are the weights written."""
    folder = Path(folder)
    with hf_progress_bars(False):
        model.save(str(folder), create_model_card=False, safe_serialization=True)
        if state_dict is not None:
            _write_weights(model, folder, state_dict)


def _write_weights(model, folder: Path, state_dict: dict) -> None:
    """Rewrite each module's weight file from ``state_dict`` (keys ``<module>.<param>``)."""
    from safetensors.torch import save_file

    paths = {entry["name"]: entry["path"] for entry in json.loads((folder / "modules.json").read_text())}
    for name, module in model._modules.items():
        sub = {k[len(name) + 1:]: v for k, v in state_dict.items() if k.startswith(name + ".")}
        if not sub:
            continue
        target = folder / paths[name]
        inner = getattr(module, "auto_model", None)
        if inner is not None:
            prefix = next(f"{attr}." for attr, child in module.named_children() if child is inner)
            inner.save_pretrained(str(target), state_dict={k[len(prefix):]: v for k, v in sub.items()
                                                           if k.startswith(prefix)})
        elif (target / "model.safetensors").is_file():
            save_file({k: v.detach().contiguous().cpu() for k, v in sub.items()}, str(target / "model.safetensors"),
                      metadata={"format": "pt"})
        else:
            raise ValueError(f"module {name} ({type(module).__name__}) has weights but no model.safetensors "
                             f"in {target}: cannot write the gathered state dict")
