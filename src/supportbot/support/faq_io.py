"""FAQ import and export (CSV and JSON, same fields both ways).

Fields: key, question, answer, phrasings, language, active. Import is
idempotent by ``key`` and all-or-nothing: every row is validated first, a bad
row is reported with its line number, and nothing of that file is written.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from supportbot.support.models import FaqEntry, FaqPhrasing, Language

FIELDS = ["key", "question", "answer", "phrasings", "language", "active"]
_KEY = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off", ""}
MAX_FILE_BYTES = 50 * 1024 * 1024


class FaqImportError(Exception):
    """The file cannot be imported; the message says where and why."""


@dataclass
class FaqRow:
    line: int
    key: str
    question: str
    answer: str
    phrasings: list[str] = field(default_factory=list)
    language: str = "en"
    active: bool = True


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _bool(value, line: int) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return True
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return text == ""
    raise FaqImportError(f"line {line}: 'active' must be true or false, got {value!r}")


def _phrasings(value, line: int, *, csv_cell: bool) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        items = value
    elif isinstance(value, str) and value.lstrip().startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as exc:
            raise FaqImportError(f"line {line}: 'phrasings' is not a valid JSON list ({exc.msg})") from None
    elif isinstance(value, str) and csv_cell:
        items = value.split("|")
    else:
        raise FaqImportError(f"line {line}: 'phrasings' must be a list of strings")
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise FaqImportError(f"line {line}: 'phrasings' must be a list of strings")
    seen, out = set(), []
    for item in (i.strip() for i in items):
        if item and item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _row(raw: dict, line: int, *, csv_cell: bool) -> FaqRow:
    if not isinstance(raw, dict):
        raise FaqImportError(f"line {line}: expected an object with fields {', '.join(FIELDS)}")
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise FaqImportError(f"line {line}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    values = {}
    for name in ("key", "question", "answer"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise FaqImportError(f"line {line}: '{name}' is required and must be text")
        values[name] = value.strip()
    if not _KEY.match(values["key"]):
        raise FaqImportError(
            f"line {line}: key {values['key']!r} may hold only letters, digits, '-' and '_' (max 100)"
        )
    language = (raw.get("language") or "en")
    if not isinstance(language, str) or language.strip().lower() not in Language.values:
        raise FaqImportError(f"line {line}: language must be one of {', '.join(Language.values)}, got {language!r}")
    return FaqRow(
        line=line, key=values["key"], question=values["question"], answer=values["answer"],
        phrasings=_phrasings(raw.get("phrasings"), line, csv_cell=csv_cell),
        language=language.strip().lower(), active=_bool(raw.get("active"), line),
    )


def parse_faq_file(path: Path) -> list[FaqRow]:
    path = Path(path)
    if not path.is_file():
        raise FaqImportError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise FaqImportError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FaqImportError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _parse_json(text)
    elif suffix == ".csv":
        rows = _parse_csv(text)
    else:
        raise FaqImportError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv or .json")
    seen: dict[str, int] = {}
    for row in rows:
        if row.key in seen:
            raise FaqImportError(f"line {row.line}: key {row.key!r} already used on line {seen[row.key]}")
        seen[row.key] = row.line
    return rows


def _parse_json(text: str) -> list[FaqRow]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FaqImportError(f"line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        data = data["entries"]
    if not isinstance(data, list):
        raise FaqImportError("line 1: expected a JSON list of entries")
    # Report the line where each object starts, so a person can find it.
    starts = _object_lines(text, len(data))
    return [_row(item, starts[i] if i < len(starts) else i + 1, csv_cell=False) for i, item in enumerate(data)]


def _object_lines(text: str, count: int) -> list[int]:
    decoder = json.JSONDecoder()
    lines, pos = [], text.index("[") + 1 if "[" in text else 0
    try:
        for _ in range(count):
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            lines.append(text.count("\n", 0, pos) + 1)
            _, pos = decoder.raw_decode(text, pos)
    except (json.JSONDecodeError, ValueError):
        pass
    return lines


def _parse_csv(text: str) -> list[FaqRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise FaqImportError("line 1: the CSV file is empty")
    missing = {"key", "question", "answer"} - set(reader.fieldnames)
    if missing:
        raise FaqImportError(f"line 1: missing column(s) {', '.join(sorted(missing))}")
    rows = []
    try:
        for raw in reader:
            if None in raw:
                raise FaqImportError(f"line {reader.line_num}: more cells than columns")
            if not any((v or "").strip() for v in raw.values()):
                continue  # blank line
            rows.append(_row(raw, reader.line_num, csv_cell=True))
    except csv.Error as exc:
        raise FaqImportError(f"line {reader.line_num}: {exc}") from None
    return rows


def import_faq(path: Path, *, progress: bool = False) -> ImportReport:
    rows = parse_faq_file(path)
    report = ImportReport()
    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="Importing FAQ", unit="entry")
    with transaction.atomic():
        existing = {e.key: e for e in FaqEntry.objects.filter(key__in=[r.key for r in rows])}
        current: dict[str, list[str]] = {}
        for key, text in FaqPhrasing.objects.filter(entry__key__in=list(existing)).values_list("entry__key", "text"):
            current.setdefault(key, []).append(text)
        for row in iterator:
            entry = existing.get(row.key)
            fields = dict(question=row.question, answer=row.answer, language=row.language, is_active=row.active)
            if entry is None:
                entry = FaqEntry.objects.create(key=row.key, **fields)
                report.created += 1
            else:
                changed = [f for f, v in fields.items() if getattr(entry, f) != v]
                if changed or current.get(row.key, []) != row.phrasings:
                    for f in changed:
                        setattr(entry, f, fields[f])
                    if changed:
                        entry.save(update_fields=[*changed, "updated_at"])
                    report.updated += 1
                else:
                    report.unchanged += 1
                    continue
                if current.get(row.key, []) == row.phrasings:
                    continue
                entry.phrasings.exclude(text__in=row.phrasings).delete()
            have = set(entry.phrasings.values_list("text", flat=True))
            FaqPhrasing.objects.bulk_create(
                [FaqPhrasing(entry=entry, text=t) for t in row.phrasings if t not in have]
            )
            # bulk_create sends no post_save: schedule the entry's sync explicitly
            entry.save(update_fields=["updated_at"])
    return report


def export_rows() -> list[dict]:
    out = []
    phrasings: dict[int, list[str]] = {}
    for entry_id, text in FaqPhrasing.objects.order_by("id").values_list("entry_id", "text"):
        phrasings.setdefault(entry_id, []).append(text)
    for e in FaqEntry.objects.order_by("key"):
        out.append({
            "key": e.key, "question": e.question, "answer": e.answer,
            "phrasings": phrasings.get(e.id, []), "language": e.language, "active": e.is_active,
        })
    return out


def export_faq(path: Path) -> int:
    path = Path(path)
    rows = export_rows()
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    elif suffix == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "phrasings": json.dumps(row["phrasings"], ensure_ascii=False),
                             "active": "true" if row["active"] else "false"})
        payload = buffer.getvalue()
    else:
        raise FaqImportError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv or .json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(payload, encoding="utf-8")
    tmp.replace(path)
    return len(rows)
