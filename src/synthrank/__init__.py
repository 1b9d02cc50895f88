"""synthrank: train dense retrievers list-wise on LLM-written multi-level ranking contexts."""

__version__ = "0.1.0"
