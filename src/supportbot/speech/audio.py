"""Decoding what customers send (OGG/Opus voice, MP3/M4A/... audio, MP4 video notes).

In-process with PyAV, which bundles FFmpeg's libraries, so no system ffmpeg is
needed. This follows faster-whisper's ``decode_audio`` (16 kHz mono through
PyAV's resampler) but stops as soon as the audio is longer than allowed: a 20 MB
file may hold hours of Opus, and decoding all of it first would cost gigabytes.
Bad input is sorted into the cases a customer should hear about.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

AudioSource = bytes | bytearray | memoryview | str | Path | BinaryIO


class AudioError(Exception):
    """Input that cannot be transcribed; ``reason`` is a stable short code for logs."""

    reason = "audio"


class NotAudio(AudioError):
    reason = "not_audio"


class CorruptAudio(AudioError):
    reason = "corrupt"


class TooLong(AudioError):
    reason = "too_long"

    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(f"audio is {seconds:.0f} s long, the limit is {limit:.0f} s")
        self.seconds = seconds
        self.limit = limit


# File signatures of audio/video containers: a file starting like this that FFmpeg
# cannot read is damaged audio, anything else is not audio at all.
_AUDIO_SIGNATURES = (b"OggS", b"ID3", b"RIFF", b"fLaC", b"\x1aE\xdf\xa3", b"#!AMR", b"FORM", b".snd")


def _looks_like_media(head: bytes) -> bool:
    if head.startswith(_AUDIO_SIGNATURES) or head[4:8] == b"ftyp":
        return True
    # MPEG audio frame / ADTS AAC sync word.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 mono, 16 kHz, in [-1, 1]

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _open_source(source: AudioSource) -> tuple[BinaryIO | str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return io.BytesIO(data), data[:16]
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            head = handle.read(16)
        return str(source), head
    position = source.tell()
    head = source.read(16)
    source.seek(position)
    return source, head


def decode(source: AudioSource, *, max_seconds: float, declared_seconds: float | None = None) -> DecodedAudio:
    """Decode to 16 kHz mono float32, or raise :class:`NotAudio`, :class:`CorruptAudio`, :class:`TooLong`.

    ``declared_seconds`` is what the sender claimed (Telegram's ``duration``): far
    less decodable audio than that means the file was cut off in transit.
    """
    import av

    handle, head = _open_source(source)
    if not head:
        raise CorruptAudio("the file is empty")
    try:
        container = av.open(handle, mode="r", metadata_errors="ignore")
    except Exception as exc:  # noqa: BLE001 - FFmpeg's many errors, or a file it cannot even probe
        if _looks_like_media(head):
            raise CorruptAudio(f"cannot open: {exc}") from None
        raise NotAudio(f"not a media file: {exc}") from None

    limit_samples = int((max_seconds + 0.5) * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    bad_packets = 0
    with container:
        if not container.streams.audio:
            raise NotAudio(f"no audio stream in {container.format.name}")
        stream = container.streams.audio[0]
        # Cheap early refusal when the header knows the length.
        if container.duration is not None and container.duration / 1_000_000 > max_seconds + 0.5:
            raise TooLong(container.duration / 1_000_000, max_seconds)
        resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    bad_packets += 1
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        array = out.to_ndarray().reshape(-1)
                        chunks.append(array)
                        total += len(array)
                if total > limit_samples:
                    raise TooLong(total / SAMPLE_RATE, max_seconds)
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
        except TooLong:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding error of FFmpeg's
            if not chunks:
                raise CorruptAudio(f"cannot decode: {exc}") from None
            # A damaged tail: keep what decoded, the length check below judges it.
            log.info("audio decoding stopped early: %s", exc)

    samples = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
    decoded = DecodedAudio(samples)
    if decoded.seconds > max_seconds + 0.5:
        raise TooLong(decoded.seconds, max_seconds)
    if decoded.seconds < 0.05:
        raise CorruptAudio(f"no decodable audio ({bad_packets} bad packets)")
    if declared_seconds and declared_seconds >= 2 and decoded.seconds < 0.5 * declared_seconds:
        raise CorruptAudio(f"truncated: {decoded.seconds:.1f} s of a declared {declared_seconds:.0f} s")
    return decoded


def is_silent(samples: np.ndarray, *, threshold: float = 0.003) -> bool:
    """Digital silence or a near-silent hiss: nothing to send to the model."""
    return samples.size == 0 or float(np.max(np.abs(samples))) < threshold
