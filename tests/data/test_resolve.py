import re
import shutil
import zipfile

import pytest

from synthrank.data import DatasetNotFoundError, load_beir, resolve_dataset


def test_path_wins(tiny_beir):
    assert resolve_dataset(str(tiny_beir)) == tiny_beir


def test_folder_that_is_not_beir(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not a BEIR folder"):
        resolve_dataset(str(tmp_path))


def test_name_under_data_dir(tiny_beir, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tiny_beir.parent))
    assert resolve_dataset("tiny") == tiny_beir


def test_name_in_cache(tiny_beir, tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTHRANK_DATA_DIR", raising=False)
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(tiny_beir, tmp_path / "cache" / "datasets" / "tiny")
    assert resolve_dataset("tiny", download=False) == tmp_path / "cache" / "datasets" / "tiny"


def make_zip(folder, target):
    with zipfile.ZipFile(target, "w") as bundle:
        for path in folder.rglob("*"):
            bundle.write(path, path.relative_to(folder.parent))


def test_download_from_mirror(tiny_beir, tmp_path, monkeypatch):
    """The real download code, pointed at a local mirror (file:// URL) instead of the BEIR host."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_zip(tiny_beir, mirror / "tiny.zip")
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("SYNTHRANK_DATA_DIR", raising=False)
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", mirror.as_uri())
    folder = resolve_dataset("tiny")
    assert folder == tmp_path / "cache" / "datasets" / "tiny"
    assert len(load_beir(folder, "test").corpus) == 6
    (mirror / "tiny.zip").unlink()
    assert resolve_dataset("tiny") == folder  # second time: from the cache, no download


def test_failed_download_says_what_to_set_and_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", "http://127.0.0.1:9/beir")  # nothing listens on port 9
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("nfcorpus")
    message = str(info.value)
    assert "SYNTHRANK_DATA_DIR" in message and "nfcorpus" in message and str(tmp_path / "data") in message
    assert str(tmp_path / "cache" / "datasets" / "nfcorpus") in message  # the cache was searched
    # the download was tried into the cache, and nothing of it (archive, temporary folder) stays
    assert (tmp_path / "cache" / "datasets").is_dir()
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []


def test_the_cache_defaults_to_the_home_folder(tiny_beir, tmp_path, monkeypatch):
    """Without SYNTHRANK_CACHE_DIR the cache is ~/.cache/synthrank: a dataset there is found, and
    one that is not there is reported with that path."""
    monkeypatch.delenv("SYNTHRANK_DATA_DIR", raising=False)
    monkeypatch.delenv("SYNTHRANK_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / ".cache" / "synthrank" / "datasets"
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"looked in: {default / 'tiny'}")):
        resolve_dataset("tiny", download=False)
    shutil.copytree(tiny_beir, default / "tiny")
    assert resolve_dataset("tiny", download=False) == default / "tiny"


def test_archive_escaping_target_is_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "evil.zip", "w") as bundle:
        bundle.writestr("../outside.txt", "x")
    monkeypatch.delenv("SYNTHRANK_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", mirror.as_uri())
    with pytest.raises(DatasetNotFoundError, match="unsafe path"):
        resolve_dataset("evil")
    assert not (tmp_path / "outside.txt").exists()


def test_not_a_name():
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        resolve_dataset("/definitely/not/here")


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_variables_forbid_the_download_and_local_names_are_listed(tiny_beir, tmp_path, monkeypatch, variable):
    """A misspelt name must not reach the network when the user said offline; the mirror here
    would serve it, so a download would show."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_zip(tiny_beir, mirror / "tinx.zip")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tiny_beir.parent))
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", mirror.as_uri())
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("tinx")
    message = str(info.value)
    assert f"{variable} is set" in message and "Did you mean 'tiny'?" in message
    assert "datasets found locally: tiny" in message
    assert not (tmp_path / "cache").exists()  # no download was even started
