"""``supportbot ask --voice FILE``: the bot's transcriber and pipeline on a local file."""

from __future__ import annotations

import json

import pytest

from supportbot.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_ask_voice_json_adds_transcript_and_language(sample_faq, spoken, tmp_path, capsys):
    data, _ = spoken("What payment methods do you accept?", "en")
    path = tmp_path / "question.ogg"
    path.write_bytes(data)
    assert main(["ask", "--voice", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "payment methods" in result["transcript"].lower()
    assert result["language"] == "en" and result["audio_seconds"] > 1
    assert result["source"] == "faq" and result["faq_key"] == "payment-methods-en"


def test_ask_voice_explains_bad_files(transactional_db, tmp_path, capsys):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a recording\n" * 40)
    assert main(["ask", "--voice", str(text_file)]) == 1
    assert "Cannot transcribe" in capsys.readouterr().err
    assert main(["ask", "--voice", str(tmp_path / "missing.ogg")]) == 1
    assert "Cannot read" in capsys.readouterr().err
    assert main(["ask"]) == 2
