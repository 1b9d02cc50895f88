"""Encoders: any local Hugging Face / sentence-transformers folder, or a bundled model.

The encoder names are imported on first use (they import torch), so that importing
``synthrank.models.bundled`` -- e.g. for ``DEFAULT_ENCODER`` in an options model -- stays cheap.
"""

from synthrank.models.bundled import DEFAULT_ENCODER, bundled_encoder_path, is_bundled_encoder

__all__ = [
    "DEFAULT_ENCODER", "Encoder", "EncoderConfig", "bundled_encoder_path", "is_bundled_encoder", "pool",
    "read_sentence_transformers_settings", "resolve_model_path", "weights_fingerprint",
]

_ENCODER_NAMES = ("Encoder", "EncoderConfig", "pool", "read_sentence_transformers_settings", "resolve_model_path",
                  "weights_fingerprint")


def __getattr__(name):
    if name in _ENCODER_NAMES:
        from synthrank.models import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module 'synthrank.models' has no attribute {name!r}")
