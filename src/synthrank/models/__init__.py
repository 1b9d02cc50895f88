"""Encoders: any local Hugging Face / sentence-transformers folder, or a bundled model.

The encoder names are imported on first use (they import torch), so that importing
``synthrank.models.bundled`` -- e.g. for ``DEFAULT_ENCODER`` in an options model -- stays cheap.
"""

from synthrank.models.bundled import DEFAULT_ENCODER, bundled_encoder_path, is_bundled_encoder

__all__ = [
    "DEFAULT_ENCODER", "Encoder", "EncoderConfig", "bundled_encoder_path", "embed", "is_bundled_encoder",
    "load_model", "resolve_model_path", "save_model", "weights_fingerprint",
]

# name -> the module that defines it, imported on first use
_LAZY = {"Encoder": "encoder", "EncoderConfig": "encoder", "resolve_model_path": "encoder",
         "weights_fingerprint": "encoder", "embed": "embedding", "load_model": "st_format", "save_model": "st_format"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"synthrank.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'synthrank.models' has no attribute {name!r}")
