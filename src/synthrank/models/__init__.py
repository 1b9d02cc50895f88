"""Encoders: any local Hugging Face / sentence-transformers folder, or a bundled model."""

from synthrank.models.bundled import DEFAULT_ENCODER, bundled_encoder_path, is_bundled_encoder
from synthrank.models.embedding import embed
from synthrank.models.encoder import Encoder, EncoderConfig, resolve_model_path, weights_fingerprint
from synthrank.models.st_format import load_model, save_model

__all__ = [
    "DEFAULT_ENCODER", "Encoder", "EncoderConfig", "bundled_encoder_path", "embed", "is_bundled_encoder",
    "load_model", "resolve_model_path", "save_model", "weights_fingerprint",
]
