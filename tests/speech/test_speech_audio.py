"""Decoding what customers send, and sorting bad input into the cases they hear about.
No model here: these are fast."""

from __future__ import annotations

import numpy as np
import pytest

from supportbot.speech.audio import CorruptAudio, NotAudio, TooLong, decode, is_silent

from ..voice_samples import encode, silence, tone


def test_ogg_opus_voice_decodes_to_16khz_mono():
    data = encode(tone(2.0), 16_000)
    assert data[:4] == b"OggS"
    decoded = decode(data, max_seconds=120, declared_seconds=2)
    assert decoded.samples.dtype == np.float32
    assert abs(decoded.seconds - 2.0) < 0.1
    assert 0.2 < float(np.max(np.abs(decoded.samples))) <= 1.0


@pytest.mark.parametrize(("container", "codec"),
                         [("mp3", "libmp3lame"), ("ipod", "aac"), ("wav", "pcm_s16le"), ("webm", "libopus")])
def test_other_audio_formats_decode(container, codec):
    out_rate = 48_000 if codec == "libopus" else 44_100
    data = encode(tone(1.5), 16_000, container=container, codec=codec, out_rate=out_rate)
    assert abs(decode(data, max_seconds=10).seconds - 1.5) < 0.15


def test_video_note_audio_track_decodes():
    data = encode(tone(1.5), 16_000, container="mp4", codec="aac", out_rate=44_100, video=True)
    assert abs(decode(data, max_seconds=10).seconds - 1.5) < 0.15


def test_path_and_file_object_sources(tmp_path):
    data = encode(tone(1.0), 16_000)
    path = tmp_path / "v.ogg"
    path.write_bytes(data)
    assert abs(decode(path, max_seconds=5).seconds - 1.0) < 0.1
    with open(path, "rb") as handle:
        assert abs(decode(handle, max_seconds=5).seconds - 1.0) < 0.1


def test_too_long_is_refused_without_decoding_everything():
    data = encode(tone(4.0), 16_000)
    with pytest.raises(TooLong) as info:
        decode(data, max_seconds=2)
    assert info.value.limit == 2 and info.value.seconds > 2


@pytest.mark.parametrize(
    "data",
    [
        b"Hello, this is a text file, not a voice message.\n" * 20,
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        b"%PDF-1.7\n" + b"0" * 500,
    ],
    ids=["text", "png", "pdf"],
)
def test_not_audio(data):
    with pytest.raises(NotAudio):
        decode(data, max_seconds=120)


def test_an_image_ffmpeg_can_open_is_not_audio():
    import io

    import av

    out = io.BytesIO()
    with av.open(out, "w", format="image2pipe") as dst:
        stream = dst.add_stream("png", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            dst.mux(packet)
    with pytest.raises(NotAudio):
        decode(out.getvalue(), max_seconds=120)


def test_damaged_audio():
    data = encode(tone(2.0), 16_000)
    with pytest.raises(CorruptAudio):
        decode(b"OggS" + bytes(400), max_seconds=120)  # an OGG signature and garbage
    with pytest.raises(CorruptAudio):
        decode(data[:60], max_seconds=120)  # cut inside the headers
    with pytest.raises(CorruptAudio):
        decode(b"", max_seconds=120)


def test_truncated_in_transit_is_damaged():
    data = encode(tone(6.0), 16_000)
    half = data[: len(data) // 4]
    with pytest.raises(CorruptAudio, match="truncated"):
        decode(half, max_seconds=120, declared_seconds=6)
    # Without a declared length a cut-off file still yields what it holds.
    assert 0.5 < decode(half, max_seconds=120).seconds < 3


def test_silence_is_recognised():
    assert is_silent(decode(encode(silence(1.5), 16_000), max_seconds=10).samples)
    assert not is_silent(decode(encode(tone(1.5), 16_000), max_seconds=10).samples)
