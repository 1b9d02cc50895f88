"""Turn a dataset argument into a local BEIR folder.

Order: an existing path; ``$SYNTHRANK_DATA_DIR/<name>``; the local cache
(``$SYNTHRANK_CACHE_DIR/datasets/<name>``, default ``~/.cache/synthrank``); the public BEIR
download, unpacked into the cache. Offline, the download fails with a message that says what
to set instead.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from synthrank.data.errors import DatasetNotFoundError
from synthrank.utils import cache_dir

BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """Whether the user asked for no downloads (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``
    set to 1, true, yes or on, as huggingface_hub reads them)."""
    return any(os.environ.get(name, "").strip().upper() in {"1", "TRUE", "YES", "ON"} for name in OFFLINE_VARIABLES)


def local_dataset_names() -> list[str]:
    """BEIR folders (holding queries.jsonl) under ``$SYNTHRANK_DATA_DIR`` and the cache."""
    roots = [Path(os.environ["SYNTHRANK_DATA_DIR"])] if os.environ.get("SYNTHRANK_DATA_DIR") else []
    roots.append(cache_dir() / "datasets")
    names = set()
    for root in roots:
        if root.is_dir():
            names.update(child.name for child in root.iterdir() if _is_beir_folder(child))
    return sorted(names)


def _not_found(name: str, searched: list[str], why: str) -> DatasetNotFoundError:
    import difflib

    names = local_dataset_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    available = f"datasets found locally: {', '.join(names)}" if names else "no dataset found locally"
    return DatasetNotFoundError(
        f"dataset {name!r} not found (looked in: {', '.join(searched)}); {why}.{hint} {available}. "
        f"Set SYNTHRANK_DATA_DIR to a folder holding '{name}/', or pass the dataset's path.")


def _is_beir_folder(path: Path) -> bool:
    return (path / "queries.jsonl").is_file()


def resolve_dataset(name_or_path: str | Path, download: bool = True) -> Path:
    """Return the folder holding the dataset, downloading it into the cache when allowed."""
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        if not candidate.is_dir() or not _is_beir_folder(candidate):
            raise DatasetNotFoundError(f"{candidate}: not a BEIR folder (no queries.jsonl inside)")
        return candidate
    name = str(name_or_path)
    if not _NAME.match(name):
        raise DatasetNotFoundError(f"{name}: no such folder, and not a dataset name")
    searched = []
    data_dir = os.environ.get("SYNTHRANK_DATA_DIR")
    if data_dir:
        local = Path(data_dir) / name
        searched.append(str(local))
        if _is_beir_folder(local):
            return local
    cached = cache_dir() / "datasets" / name
    searched.append(str(cached))
    if _is_beir_folder(cached):
        return cached
    if not download:
        raise _not_found(name, searched, "downloading was not asked for")
    if offline():
        variables = "/".join(v for v in OFFLINE_VARIABLES if os.environ.get(v))
        raise _not_found(name, searched, f"{variables} is set, so it is not downloaded")
    return download_beir(name, cached.parent, searched)


def download_beir(name: str, target_root: Path, searched: list[str] | None = None) -> Path:
    """Download ``<name>.zip`` from the BEIR mirror and unpack it to ``target_root/<name>``."""
    base = os.environ.get("SYNTHRANK_BEIR_URL", BEIR_BASE_URL).rstrip("/")
    url = f"{base}/{name}.zip"
    target_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_root) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            raise _not_found(name, searched or [], f"downloading {url} failed ({error})") from None
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():  # refuse archives that write outside the target
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DatasetNotFoundError(f"{url}: unsafe path in archive: {member}")
            bundle.extractall(tmp)
        unpacked = Path(tmp) / name
        if not _is_beir_folder(unpacked):
            raise DatasetNotFoundError(f"{url}: archive has no {name}/queries.jsonl")
        final = target_root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(unpacked, final)
    return final
