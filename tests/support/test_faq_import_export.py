import json

import pytest

from supportbot.support.faq_io import FaqImportError, export_faq, import_faq
from supportbot.support.models import FaqEmbedding, FaqEntry, FaqPhrasing

pytestmark = pytest.mark.django_db(transaction=True)


def _write(path, rows):
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


ROWS = [
    {"key": "a", "question": "How long is delivery?", "answer": "2-3 days.", "phrasings": ["shipping time?"],
     "language": "en", "active": True},
    {"key": "b", "question": "Скільки коштує доставка?", "answer": "80 грн < 1500 & more", "phrasings": [],
     "language": "uk", "active": False},
]


def test_json_import_is_idempotent_and_embeds(tmp_path):
    path = _write(tmp_path / "faq.json", ROWS)
    report = import_faq(path)
    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    assert FaqEmbedding.objects.count() == 3  # two questions + one phrasing
    again = import_faq(path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert FaqEntry.objects.get(key="b").is_active is False


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_export_then_import_is_a_no_op(tmp_path, suffix):
    import_faq(_write(tmp_path / "faq.json", ROWS))
    before = list(FaqEntry.objects.values_list("key", "question", "answer", "language", "is_active", "updated_at"))
    vectors = set(FaqEmbedding.objects.values_list("id", flat=True))
    out = tmp_path / f"export{suffix}"
    assert export_faq(out) == 2
    report = import_faq(out)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 2)
    after = list(FaqEntry.objects.values_list("key", "question", "answer", "language", "is_active", "updated_at"))
    assert before == after and set(FaqEmbedding.objects.values_list("id", flat=True)) == vectors


def test_csv_with_pipe_separated_phrasings(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("key,question,answer,phrasings,language,active\n"
                    "ret,How do I return an item?,Within 14 days.,return policy?|send it back,en,yes\n",
                    encoding="utf-8")
    import_faq(path)
    assert list(FaqPhrasing.objects.values_list("text", flat=True)) == ["return policy?", "send it back"]


def test_update_changes_answer_and_phrasings(tmp_path):
    import_faq(_write(tmp_path / "faq.json", ROWS))
    rows = [dict(ROWS[0], answer="1-2 days.", phrasings=["delivery time?"]), ROWS[1]]
    report = import_faq(_write(tmp_path / "faq2.json", rows))
    assert (report.updated, report.unchanged) == (1, 1)
    entry = FaqEntry.objects.get(key="a")
    assert entry.answer == "1-2 days." and [p.text for p in entry.phrasings.all()] == ["delivery time?"]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('[{"key": "ok", "question": "q", "answer": "a"},\n {"key": "bad", "question": "", "answer": "a"}]',
         ".json", "line 2: 'question' is required"),
        ("key,question,answer,language\nok,q,a,en\nbad key!,q,a,en\n", ".csv", "line 3: key"),
        ("key,question,answer,language\nok,q,a,en\nfr,q,a,fr\n", ".csv", "line 3: language must be"),
        ("key,question,answer,active\nok,q,a,perhaps\n", ".csv", "line 2: 'active'"),
        ('[{"key": "x", "question": "q", "answer": "a", "phrasings": "[broken"}]', ".json", "line 1: 'phrasings'"),
        ('[{"key": "x", "question": "q", "answer": "a"}, {"key": "x", "question": "q", "answer": "b"}]',
         ".json", "already used"),
        ('{"key": "x"', ".json", "invalid JSON"),
        ("question,answer\nq,a\n", ".csv", "missing column(s) key"),
        ('[{"key": "x", "question": "q", "answer": "a", "colour": "red"}]', ".json", "unknown field"),
        ("key,question,answer\nx,q,a,EXTRA\n", ".csv", "more cells than columns"),
        ("anything", ".txt", "unsupported file type"),
    ],
)
def test_a_bad_row_writes_nothing_and_names_the_line(tmp_path, content, suffix, message):
    path = tmp_path / f"faq{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FaqImportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_faq(path)
    assert FaqEntry.objects.count() == 0


def test_not_utf8_is_rejected(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_bytes("key,question,answer\nx,Доставка,a\n".encode("cp1251"))
    with pytest.raises(FaqImportError, match="not UTF-8"):
        import_faq(path)


def test_cli_reports_bad_row_and_exit_code(tmp_path, capsys):
    from supportbot.cli import main

    path = tmp_path / "faq.csv"
    path.write_text("key,question,answer\nok,q,a\n,q,a\n", encoding="utf-8")
    assert main(["import-faq", str(path), "-q"]) == 1
    assert "line 3" in capsys.readouterr().err
    assert FaqEntry.objects.count() == 0
