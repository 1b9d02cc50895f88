"""Encoders: any local Hugging Face / sentence-transformers folder, or a bundled model."""

from synthrank.models.bundled import DEFAULT_ENCODER, bundled_encoder_path, is_bundled_encoder
from synthrank.models.encoder import (
    Encoder,
    EncoderConfig,
    pool,
    read_sentence_transformers_settings,
    resolve_model_path,
    weights_fingerprint,
)

__all__ = [
    "DEFAULT_ENCODER", "Encoder", "EncoderConfig", "bundled_encoder_path", "is_bundled_encoder", "pool",
    "read_sentence_transformers_settings", "resolve_model_path", "weights_fingerprint",
]
