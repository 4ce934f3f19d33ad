"""The fact check: an LLM answer passes only when one FAQ entry backs every fact it states.

The entries are the shipped sample FAQ's (a shop's delivery, payment, returns... in
uk/ru/en); each case is a question, an answer a model could write, and the entries
it was grounded in.
"""

from __future__ import annotations

import json
import time

import pytest

from supportbot.llm.factcheck import FactChecker, check_answer
from supportbot.llm.prompt import ContextEntry

from ..conftest import SAMPLE_FAQ

FAQ = {e["key"]: e for e in json.loads(SAMPLE_FAQ.read_text(encoding="utf-8"))}


def entries(*keys: str) -> list[ContextEntry]:
    return [ContextEntry(n, key, FAQ[key]["question"], FAQ[key]["answer"], FAQ[key]["language"], 0.9 - n / 100)
            for n, key in enumerate(keys, 1)]


def verdict(question: str, answer: str, *keys: str):
    return check_answer(answer, entries(*keys), question)


# -- numbers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("question", "answer", "keys"), [
    # prices, with their currency, written any way
    ("Скільки коштує доставка?", "Доставка у відділення Нової пошти коштує 80 грн, а від 1 500 грн безкоштовна.",
     ["delivery-cost-uk"]),
    ("Сколько стоит доставка?", "Доставка до отделения «Новой почты» стоит 80 грн, от 1500 гривен бесплатно.",
     ["delivery-cost-ru"]),
    ("How much is shipping?", "Shipping to a Nova Poshta branch costs 80 UAH; from 1,500 UAH it is free.",
     ["delivery-cost-en"]),
    ("How much is shipping to Europe?", "Shipping to the EU costs 9 euros, and is free from €150.",
     ["delivery-cost-en"]),
    # percentages and a fee
    ("Какая комиссия при оплате на почте?", "Комиссия перевозчика 20 грн + 2% от суммы.", ["payment-methods-ru"]),
    ("Яка знижка з промокодом?", "Промокод WELCOME_10 дає 10 відсотків знижки, але не більше 500 грн.",
     ["promo-codes-uk"]),
    # periods: the same number of days in days, weeks or words, in uk / ru / en
    ("Скільки часу на повернення?", "Повернути товар можна протягом 14 днів.", ["returns-uk"]),
    ("Скільки часу на повернення?", "Повернути товар можна протягом двох тижнів.", ["returns-uk"]),
    ("Скільки часу на повернення?", "Повернути товар можна протягом чотирнадцяти днів.", ["returns-uk"]),
    ("Сколько времени на возврат?", "Вернуть товар можно в течение 2 недель.", ["returns-ru"]),
    ("How long do I have to return an item?", "You can return it within two weeks of receipt.", ["returns-en"]),
    ("Яка гарантія?", "Гарантія від 1 року, на велику побутову техніку до 3 років.", ["warranty-uk"]),
    ("Скільки триває ремонт?", "Гарантійний ремонт триває до 14 днів.", ["warranty-uk"]),
    # durations and ranges
    ("Як часто оновлюється статус?", "Статус оновлюється кожні 2–3 години.", ["order-tracking-uk"]),
    ("How long does delivery take?", "Nova Poshta delivers in one to three business days... "
     "well, 1-3 business days within Ukraine.", ["delivery-time-en"]),
    # times of day: 14:00 is 2 pm
    ("До котрої треба замовити?", "Замовлення, оформлені до 14:00, відправляємо того ж дня.",
     ["delivery-time-uk"]),
    ("By when must I order?", "Orders placed before 14:00 ship the same day.", ["delivery-time-en"]),
    ("Коли працює гаряча лінія?", "Гаряча лінія працює щодня з 8:00 до 22:00.", ["contact-operator-uk"]),
    # the customer's own number, beside the entry's figure of the same kind
    ("У мене кошик на 1700 гривень. Чи платитиму я за доставку?",
     "Доставка безкоштовна для замовлень від 1500 грн, тож за кошик на 1700 грн ви не платите.",
     ["delivery-cost-uk"]),
])
def test_numbers_the_entry_states_pass(question, answer, keys):
    result = verdict(question, answer, *keys)
    assert result.ok, result
    assert result.entry_key == keys[0] and result.supported and not result.unsupported


@pytest.mark.parametrize(("question", "answer", "keys", "claim"), [
    ("Скільки коштує доставка?", "Доставка у відділення коштує 300 грн.", ["delivery-cost-uk"], "300 грн"),
    ("Скільки коштує доставка?", "Доставка у відділення коштує 80 євро.", ["delivery-cost-uk"], "80 євро"),
    ("How much is shipping?", "Shipping costs 80 UAH, free from 2,000 UAH.", ["delivery-cost-en"], "2,000 UAH"),
    ("How long do I have to return an item?", "You can return it within 30 days.", ["returns-en"], "30 days"),
    ("Скільки часу на повернення?", "Повернути товар можна протягом трьох тижнів.", ["returns-uk"],
     "трьох тижнів"),
    ("Сколько времени на возврат?", "Вернуть товар можно в течение двух месяцев.", ["returns-ru"],
     "двух месяцев"),
    ("Яка знижка з промокодом?", "Промокод дає 15% знижки.", ["promo-codes-uk"], "15%"),
    ("Коли працює гаряча лінія?", "Гаряча лінія працює щодня з 9:00 до 18:00.", ["contact-operator-uk"], "9:00"),
    ("When do you ship?", "Orders placed before 4 pm ship the same day.", ["delivery-time-en"], "4 pm"),
    # "yes, within 20 days": the customer's number, alone, is the invented answer
    ("Can I still return it after 20 days?", "Yes, you can return it within 20 days.", ["returns-en"], "20 days"),
])
def test_numbers_the_entry_does_not_state_are_refused(question, answer, keys, claim):
    result = verdict(question, answer, *keys)
    assert not result.ok
    assert claim in [c.text for c in result.unsupported], result
    assert result.reason.startswith("unsupported claim ")


def test_a_true_number_about_something_else_is_refused():
    # 80 UAH is the branch delivery price, not the cash-on-delivery fee (the entry for that says 20 UAH + 2%).
    question = "Скільки коштує накладений платіж?"
    wrong = verdict(question, "Комісія за накладений платіж становить 80 грн.",
                    "delivery-cost-uk", "payment-methods-uk")
    assert not wrong.ok and [c.text for c in wrong.unsupported] == ["80 грн"]
    right = verdict(question, "За накладений платіж комісія перевізника 20 грн + 2% від суми.",
                    "delivery-cost-uk", "payment-methods-uk")
    assert right.ok and right.entry_key == "payment-methods-uk"


def test_facts_from_two_entries_are_refused_one_entry_must_back_them_all():
    answer = "Доставка коштує 80 грн, а повернути товар можна протягом 14 днів."
    result = verdict("Скільки коштує доставка і чи можна повернути?", answer, "delivery-cost-uk", "returns-uk")
    assert not result.ok and len(result.unsupported) == 1
    assert verdict("Скільки коштує доставка?", "Доставка коштує 80 грн.", "returns-uk", "delivery-cost-uk").ok


# -- names, codes, contacts ----------------------------------------------------------------------
@pytest.mark.parametrize(("question", "answer", "keys"), [
    ("Де ваші магазини?", "Пункти видачі є у Києві та Львові.", ["store-hours-pickup-uk"]),
    ("Where are your shops?", "Our pickup points are in Kyiv and Lviv.", ["store-hours-pickup-uk"]),  # transliterated
    ("Чим можна оплатити?", "Приймаємо Visa, Mastercard, Apple Pay і Google Pay.", ["payment-methods-uk"]),
    ("Чи можна частинами через monobank?", "Для замовлень від 3000 грн доступна «Покупка частинами» від monobank "
     "та «Оплата частинами» від ПриватБанку.", ["installments-uk"]),
    ("How do I contact you?", "Call +380 44 390 25 25 or email support@volta.ua.", ["contact-operator-uk"]),
    ("Як зв'язатися?", "Телефонуйте на 0 800 30 25 25 або пишіть на support@volta.ua.", ["contact-operator-uk"]),
    ("How do I track my order?", "Check the status in My Orders on volta.ua or with the TTN on the Nova Poshta "
     "website.", ["order-tracking-en"]),
    ("How do I track my order?", "We send the TTN by SMS; check it on the Nova Poshta website.",
     ["order-tracking-uk"]),  # Latin names of a Ukrainian entry: ТТН, Нової пошти
])
def test_names_codes_and_contacts_the_entry_has_pass(question, answer, keys):
    assert verdict(question, answer, *keys).ok


@pytest.mark.parametrize(("question", "answer", "keys", "claim"), [
    ("Can I pay with PayPal?", "Yes, you can pay with PayPal.", ["payment-methods-en"], "PayPal"),
    ("Where are your shops?", "Our pickup points are in Kyiv and Odesa.", ["store-hours-pickup-en"], "Odesa"),
    ("Чи є у вас застосунок?", "Завантажте наш застосунок Volta Shop в App Store.", ["order-tracking-uk"], "App"),
    ("Яка знижка з промокодом?", "Промокод WELCOME_20 дає 10% знижки.", ["promo-codes-uk"], "WELCOME_20"),
    ("Як зв'язатися?", "Пишіть на help@volta.ua.", ["contact-operator-uk"], "help@volta.ua"),
    ("Як зв'язатися?", "Телефонуйте на 0 800 30 25 26.", ["contact-operator-uk"], "0 800 30 25 26"),
    ("How do I track my order?", "Check the status at volta.com.", ["order-tracking-en"], "volta.com"),
])
def test_names_codes_and_contacts_the_entry_lacks_are_refused(question, answer, keys, claim):
    result = verdict(question, answer, *keys)
    assert not result.ok and claim in [c.text for c in result.unsupported], result


# -- yes / no ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("question", "answer", "keys"), [
    ("Чи можна повернути товар?", "Так, товар належної якості можна повернути протягом 14 днів.", ["returns-uk"]),
    ("Чи можна змінити замовлення?", "Так, замовлення можна змінити, поки воно має статус «Нове».",
     ["change-cancel-order-uk"]),
    ("Можно ли купить в рассрочку?", "Да, для заказов от 3000 грн доступна «Покупка частями» от monobank.",
     ["installments-ru"]),
    ("Можно отменить отправленный заказ?", "Нет, отправленный заказ отменить нельзя, но можно не забирать посылку.",
     ["change-cancel-order-ru"]),
    ("Does the promo code work on outlet items?", "No, codes don't apply to items marked Outlet.",
     ["promo-codes-en"]),
    ("My order is 2000 UAH. Is shipping free?",
     "Yes: orders from 1500 UAH ship free within Ukraine, so your 2000 UAH order ships free.", ["delivery-cost-en"]),
])
def test_a_yes_or_no_the_entry_says_passes(question, answer, keys):
    assert verdict(question, answer, *keys).ok


@pytest.mark.parametrize(("question", "answer", "keys"), [
    # the entry says nothing about the customer's condition: "yes" is a guess
    ("Чи можу я повернути товар, куплений в іншому магазині?",
     "Так, ви можете повернути товар, куплений в іншому магазині.", ["returns-uk"]),
    ("Чи є у вас мобільний застосунок?", "Так, у нас є мобільний застосунок.", ["installments-uk"]),
    ("Do you deliver to Kharkiv?", "Yes, Nova Poshta delivers in 1–3 business days within Ukraine.",
     ["delivery-time-en"]),  # the entry has no "can"/"available": a cheap check cannot tell
    ("Я ещё не получил SMS. Это нормально?", "Конечно, это нормально.", ["order-tracking-ru"]),
    ("Чи продаєте ви вживані телефони?", "Ні, ми не продаємо вживані телефони.", ["returns-uk"]),
    # A limit: "no, you don't pay" is right, but the entry says "free", not "not": refused (a hand-over).
    ("My order is 2000 UAH. Do I pay for shipping?",
     "No: orders from 1500 UAH ship free within Ukraine, so your 2000 UAH order ships free.", ["delivery-cost-en"]),
])
def test_a_yes_or_no_the_entry_does_not_say_is_refused(question, answer, keys):
    result = verdict(question, answer, *keys)
    assert not result.ok
    assert any(c.kind in ("yes", "no") for c in result.unsupported), result


# -- language ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("question", "answer", "keys", "reason"), [
    ("skilky koshtuye dostavka?", "Delivery within Ukraine is free for orders from 1500 UAH.",
     ["delivery-cost-en", "delivery-cost-uk"], "wrong language: English for a Ukrainian question"),
    ("Скільки коштує доставка?", "Shipping within Ukraine is free for orders from 1500 UAH.",
     ["delivery-cost-en"], "wrong language: English for a Ukrainian question"),
    ("How much is shipping?", "Доставка по Україні безкоштовна для замовлень від 1500 грн.",
     ["delivery-cost-uk"], "wrong language: Cyrillic for a English question"),
    ("Скільки коштує доставка?", "По Украине доставка бесплатная при заказе от 1500 грн, заказы ещё дешевле.",
     ["delivery-cost-ru"], "wrong language: Russian for a Ukrainian question"),
])
def test_an_answer_in_another_language_than_the_question_is_refused(question, answer, keys, reason):
    result = verdict(question, answer, *keys)
    assert not result.ok and result.reason == reason


def test_latin_letter_questions_want_cyrillic_answers_and_facts_compare_across_languages():
    cyrillic = verdict("skilky koshtuye dostavka?", "Доставка по Україні безкоштовна для замовлень від 1500 грн.",
                       "delivery-cost-en", "delivery-cost-uk")
    assert cyrillic.ok and cyrillic.language == "uk" and cyrillic.entry_key == "delivery-cost-uk"
    # A Russian answer from a Ukrainian-only FAQ: numbers, names and contacts carry it.
    russian = verdict("kak svyazatsya s operatorom?", "Звоните на 0 800 30 25 25 или пишите на support@volta.ua.",
                      "contact-operator-uk")
    assert russian.ok and russian.language == "ru"
    assert not verdict("kak svyazatsya s operatorom?", "Звоните на 0 800 30 25 26.", "contact-operator-uk").ok


# -- answers without facts -------------------------------------------------------------------------
def test_an_answer_without_facts_must_be_the_entrys_own_content():
    question = "Як змінити замовлення?"
    own = verdict(question, "Поки замовлення нове або обробляється, його можна змінити в особистому розділі "
                  "замовлень або за телефоном.", "change-cancel-order-uk")
    assert own.ok and not own.supported and own.overlap is not None and own.overlap >= 0.75
    invented = verdict(question, "Завантажте наш мобільний застосунок і змініть замовлення там.",
                       "change-cancel-order-uk")
    assert not invented.ok and invented.reason.startswith("no fact and too little in common")
    # Echoing the customer's words is no content either.
    echo = verdict("Чи робите ви гравіювання на годинниках?", "Ми робимо гравіювання на годинниках.",
                   "warranty-uk")
    assert not echo.ok


def test_a_deflection_is_a_refusal():
    result = verdict("How do I contact you?", "I don't know, I'll pass you to an operator.", "contact-operator-en")
    assert not result.ok and not result.supported


def test_an_entry_copied_for_an_unrelated_question_is_refused():
    result = verdict("Скільки найбільше я заощаджу з кодом WELCOME_10 на дорогому телевізорі?",
                     "Відповідаємо протягом 24 годин.", "promo-codes-uk", "contact-operator-uk")
    assert not result.ok


# -- broken input --------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", ["", "   ", "...", "?!", "—", "\n\n"])
def test_empty_and_punctuation_only_answers_are_refused(answer):
    result = verdict("Скільки коштує доставка?", answer, "delivery-cost-uk")
    assert not result.ok and result.reason == "empty answer"


def test_no_entries_nothing_is_supported():
    result = check_answer("Доставка коштує 80 грн.", [], "Скільки коштує доставка?")
    assert not result.ok and result.reason == "no FAQ entry to check it against"


def test_a_huge_answer_is_checked_quickly():
    answer = "Доставка у відділення Нової пошти коштує 80 грн. " * 2000  # ~100k characters
    started = time.perf_counter()
    result = verdict("Скільки коштує доставка?", answer, "delivery-cost-uk", "payment-methods-uk")
    assert result.ok and time.perf_counter() - started < 5
    assert not verdict("Скільки коштує доставка?", answer + "Або 300 грн.", "delivery-cost-uk").ok


def test_plain_strings_work_as_entries():
    result = check_answer("Delivery costs 80 UAH.", ["Delivery to a branch costs 80 UAH."], "How much is delivery?")
    assert result.ok and result.entry_id is None


def test_the_verdict_names_the_entry_and_the_claims():
    result = verdict("Скільки коштує доставка?", "Доставка коштує 80 грн, а кур'єром 150 грн.",
                     "returns-uk", "delivery-cost-uk")
    assert not result.ok and result.entry_key == "delivery-cost-uk" and result.entry_id == 2
    assert result.reason == "unsupported claim '150 грн' (price)"
    data = result.as_dict()
    assert data["supported"] == [{"kind": "price", "text": "80 грн"}]
    assert data["unsupported"] == [{"kind": "price", "text": "150 грн"}]


# -- while an answer is written ---------------------------------------------------------------------
def test_early_flags_a_finished_sentence_no_entry_supports_and_nothing_unfinished():
    checker = FactChecker(entries("delivery-cost-uk", "returns-uk"), "Скільки коштує доставка?")
    assert checker.early("Доставка коштує 30") is None  # may still become 300, or 30 грн of something
    assert checker.early("Доставка коштує 80 грн. ") is None
    stopped = checker.early("Доставка коштує 80 грн. Кур'єр коштує 300 грн. А")
    assert stopped is not None and stopped.reason == "unsupported claim '300 грн' (price)"
    # A number the customer gave is not certain to fail: it may stand beside the entry's figure.
    mine = FactChecker(entries("delivery-cost-uk"), "У мене кошик на 1700 грн, скільки доставка?")
    assert mine.early("Ваш кошик на 1700 грн. Далі") is None
    wrong = FactChecker(entries("delivery-cost-uk"), "skilky koshtuye dostavka?")
    assert wrong.early("Delivery is free for orders over 1500 UAH. And") is not None
