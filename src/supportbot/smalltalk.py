"""Small talk: greetings, thanks, goodbyes, "who are you", "are you a bot", "a person, please".

A customer who writes "привіт", "spasibo!!" or "are you a bot?" has asked the FAQ
nothing. Sent down the answer pipeline such a message either matches some entry by
accident, wakes the LLM (seconds of CPU, or an API call) to say hello, or is handed
to a person who has nothing to do. The bot answers it with its own short texts
instead (``reply``); "I want a person" still reaches a person, as ``/operator`` does.

Deterministic on purpose: a word list cannot invent a policy or a price, costs no
model call, answers in microseconds and behaves the same on every run, so what it
says can be tested and reviewed. The price is recall: only messages that are
*entirely* small talk match, a few words long, made only of the phrases below
(greetings, thanks and acknowledgements like "ok", goodbyes, questions about the
bot, requests for a person) and filler ("please", "bot", "very"). Anything else,
"hi, how much is delivery to Lviv?" included, is not small talk: a greeting must
never swallow a question, and a miss here costs only the normal answer path.

Normalisation before matching: case, Unicode compatibility forms, "ё" as "е", the
apostrophes ' ’ ʼ (dropped, so "what's" is "whats" and "з'єднайте" is "зєднайте"),
punctuation, emoji and control characters (separators), Latin look-alike letters
inside Cyrillic words ("привiт" with a Latin i), and repeated letters ("привееет",
"thaaanks": every run of one letter counts as one, in the word lists too).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from enum import Enum
from functools import cache

__all__ = ["MAX_WORDS", "SmallTalk", "classify", "reply", "words"]


class SmallTalk(str, Enum):
    """What a small-talk message is (its value is logged as the answer's reason)."""

    GREETING = "greeting"
    THANKS = "thanks"  # acknowledgements ("ok", "понятно") too: they need the same reply
    GOODBYE = "goodbye"
    WHO_ARE_YOU = "who_are_you"
    WHAT_CAN_YOU_DO = "what_can_you_do"
    ARE_YOU_BOT = "are_you_bot"
    WANTS_PERSON = "wants_person"


#: A message with more words than this is never small talk ("Hello, I would like to
#: talk to a real person please" has 11).
MAX_WORDS = 12
#: Longer raw text is not even normalised.
_MAX_CHARS = 200

# When a message mixes kinds ("hi, who are you?", "thanks, bye"), the first of these wins.
_PRIORITY = (SmallTalk.WANTS_PERSON, SmallTalk.ARE_YOU_BOT, SmallTalk.WHO_ARE_YOU, SmallTalk.WHAT_CAN_YOU_DO,
             SmallTalk.GOODBYE, SmallTalk.THANKS, SmallTalk.GREETING)


class _Role(Enum):
    FILLER = "filler"  # allowed anywhere, means nothing on its own ("please", "bot")
    ASK = "ask"        # "I want to talk to", "позовите", "з": allowed only next to a person (WANTS_PERSON)


# Phrases, comma-separated, per kind and language (Latin-letter Ukrainian and Russian last).
# WANTS_PERSON lists who the customer asks for; the words around it ("I want to talk to",
# "позовите") are _ASK, so "connect me with a real person please" needs no phrase of its own.
_PHRASES: dict[SmallTalk, str] = {
    SmallTalk.WANTS_PERSON: """
        operator, an operator, the operator, human, a human, real human, a real human, person, a person,
        real person, a real person, live person, a live person, someone real, somebody real, agent, an agent,
        live agent, a live agent, human agent, a human agent, support agent, a support agent, manager, a manager,
        customer support, support team, live support, live chat, consultant, a consultant, specialist,
        a specialist, staff, employee, an employee, human being, a human being, not a bot,
        оператор, оператора, оператором, операторові, оператору, живий оператор, живого оператора,
        живим оператором, людина, людину, людиною, людини, людині, жива людина, живу людину, живою людиною,
        живої людини, справжня людина, справжню людину, справжньою людиною, реальна людина, реальну людину,
        реальною людиною, менеджер, менеджера, менеджером, консультант, консультанта, консультантом,
        працівник, працівника, працівником, співробітник, співробітника, співробітником, фахівець, фахівця,
        фахівцем, спеціаліст, спеціаліста, спеціалістом, підтримка, підтримку, підтримкою, не бот,
        живой оператор, живого оператора, живым оператором, человек, человека, человеком, человеку,
        живой человек, живого человека, живым человеком, реальный человек, реального человека,
        реальным человеком, настоящий человек, настоящего человека, настоящим человеком, менеджером,
        консультантом, сотрудник, сотрудника, сотрудником, специалистом, поддержка, поддержку, поддержкой,
        техподдержка, техподдержку, техподдержкой, администратор, администратора, администратором,
        не бот, не робот,
        operatora, operatorom, lyudyna, lyudynu, lyudynoyu, liudyna, liudynu, zhyva lyudyna, zhyvu lyudynu,
        chelovek, cheloveka, chelovekom, zhivoy chelovek, zhivogo cheloveka, zhivym chelovekom,
        menedzher, menedzhera
    """,
    SmallTalk.ARE_YOU_BOT: """
        are you a bot, are you bot, are u a bot, r u a bot, r u bot, you a bot, are you a robot,
        are you a human, are you human, are u human, r u human, are you a person, are you a real person,
        are you real, are you a machine, are you an ai, are you ai, are you chatgpt, are you a real human,
        is this a bot, is this a human, is this a real person, is this a person, is this automated,
        is this chatgpt, is this an ai, am i talking to a bot, am i talking to a human, am i talking to a person,
        am i talking to a real person, am i chatting with a bot, am i speaking to a bot, am i speaking to a human,
        bot or human, human or bot, bot or person, person or bot,
        ти бот, ви бот, це бот, чи ти бот, чи ви бот, чи це бот, ти робот, ви робот, ти людина, ви людина,
        це людина, чи ти людина, чи ви людина, чи це людина, ти жива людина, ви жива людина, це жива людина,
        чи це жива людина, ти справжня людина, ви справжня людина, ти штучний інтелект, це штучний інтелект,
        ти ші, це ші, я говорю з ботом, я розмовляю з ботом, я спілкуюся з ботом, я спілкуюсь з ботом,
        я говорю з людиною, я розмовляю з людиною, я спілкуюся з людиною, бот чи людина, людина чи бот,
        ты бот, вы бот, это бот, ты робот, вы робот, это робот, ты человек, вы человек, это человек,
        ты живой человек, вы живой человек, это живой человек, ты живой, вы живой, ты настоящий,
        ты искусственный интеллект, это искусственный интеллект, ты ии, это ии, ты нейросеть, это нейросеть,
        ты чатгпт, я говорю с ботом, я разговариваю с ботом, я общаюсь с ботом, я говорю с человеком,
        я разговариваю с человеком, я общаюсь с человеком, бот или человек, человек или бот,
        ty bot, ti bot, vy bot, vi bot, eto bot, tse bot, ty robot, ty chelovek, ty lyudyna, ty liudyna
    """,
    SmallTalk.WHO_ARE_YOU: """
        who are you, who r u, who are u, who is this, whos this, who am i talking to, who am i talking with,
        who am i speaking to, who am i speaking with, who am i chatting with, what are you, whats your name,
        what is your name, who is there, whos there, introduce yourself, tell me about yourself,
        хто ти, хто ви, хто це, ти хто, ви хто, хто там, з ким я говорю, з ким я розмовляю, з ким я спілкуюся,
        з ким я спілкуюсь, як тебе звати, як вас звати, як тебе звуть, як вас звуть, представтеся,
        розкажи про себе, розкажіть про себе,
        кто ты, кто вы, кто это, ты кто, вы кто, кто там, с кем я говорю, с кем я разговариваю, с кем я общаюсь,
        с кем я переписываюсь, как тебя зовут, как вас зовут, представьтесь, представься, расскажи о себе,
        расскажите о себе,
        kto ty, kto ti, kto vy, ty kto, ti kto, khto ty, hto ty, khto vy, hto vy, ty khto, ty hto
    """,
    SmallTalk.WHAT_CAN_YOU_DO: """
        what can you do, what can u do, what do you do, what can you help with, what can you help me with,
        how can you help, how can you help me, can you help, can you help me, could you help me, help, help me,
        i need help, need help, what are you for, what is this, what is this bot, how does this work,
        how does it work, how do i use this, how to use this, how to use, what are you able to do,
        що ти вмієш, що ви вмієте, що вмієш, що ти можеш, що ви можете, чим ти можеш допомогти,
        чим ви можете допомогти, чим можеш допомогти, чим можете допомогти, допоможіть, допоможи,
        допоможіть мені, допоможи мені, мені потрібна допомога, потрібна допомога, допомога, що ти робиш,
        для чого ти, для чого цей бот, що це, що це за бот, як це працює, як цим користуватися,
        что ты умеешь, что вы умеете, что умеешь, что ты можешь, что вы можете, чем ты можешь помочь,
        чем вы можете помочь, чем можешь помочь, чем можете помочь, помогите, помоги, помогите мне, помоги мне,
        мне нужна помощь, нужна помощь, помощь, что ты делаешь, для чего ты, для чего этот бот, что это,
        что это за бот, как это работает, как этим пользоваться,
        shcho ty vmiesh, shcho ty vmiyesh, scho ty vmiesh, sho ty vmiesh, chto ty umeesh, chto umeesh,
        chto vy umeete, chem mozhesh pomoch, pomogite, pomogi, dopomozhit, dopomozhy
    """,
    SmallTalk.GOODBYE: """
        bye, goodbye, good bye, bye bye, byebye, see you, see ya, see you later, see you soon, later, cya,
        good night, goodnight, take care, have a nice day, have a good day, have a great day, farewell,
        thats all, that is all, thats it,
        бувай, бувайте, до побачення, до зустрічі, на все добре, всього доброго, всього найкращого,
        гарного дня, гарного вечора, на добраніч, добраніч, надобраніч, па, папа, бай, це все,
        пока, пока пока, до свидания, досвидания, до встречи, всего доброго, всего хорошего, хорошего дня,
        хорошего вечера, спокойной ночи, счастливо, бывай, прощайте, прощай, это все, на этом все,
        poka, do svidaniya, do svidania, dosvidaniya, do pobachennya, do pobachennia, buvay, buvai, buvaite,
        buvayte, vsego dobrogo, vsogo dobrogo, vsioho dobroho
    """,
    SmallTalk.THANKS: """
        thanks, thank you, thank u, thankyou, thx, thnx, tnx, ty, tysm, thanks a lot, many thanks,
        thanks so much, thank you so much, thank you very much, much appreciated, appreciate it,
        i appreciate it, cheers, no thanks, no thank you, ok, okay, okey, k, got it, great, cool, perfect,
        nice, awesome, excellent, understood, i see, alright, all right, fine, good,
        дякую, дякую вам, дякую тобі, дуже дякую, щиро дякую, красно дякую, спасибі, дяки, дякс, дяк,
        вдячний, вдячна, дуже вдячний, дуже вдячна, ні дякую, ок, окей, добре, зрозуміло, зрозумів,
        зрозуміла, ясно, чудово, супер, клас, класно, гаразд, прекрасно, ідеально,
        спасибо, спасибо большое, большое спасибо, огромное спасибо, спасибо огромное, спс, пасиб, спасибки,
        благодарю, благодарствую, мерси, сенкс, нет спасибо, хорошо, понятно, понял, поняла, отлично,
        класс, прекрасно, идеально, ладно,
        spasibo, spasibki, spasyba, spasybi, spasibi, dyakuyu, diakuiu, dyakuju, diakuyu, dyakuyu vam,
        diakuiu vam, blagodaryu, spasibo bolshoe, bolshoe spasibo, sps, merci, dobre, horosho, khorosho,
        ponyatno, zrozumilo, okei
    """,
    SmallTalk.GREETING: """
        hi, hello, hey, hey there, hi there, hello there, hiya, howdy, yo, greetings, good morning,
        good afternoon, good evening, good day, morning, evening, how are you, how are you doing, how are u,
        how r u, hows it going, how is it going, whats up, wassup, sup, how do you do, anybody there,
        anyone there, is anyone there, is anybody there, anyone here, hello world,
        привіт, привітик, привітання, вітаю, вітання, добрий день, доброго дня, добрий ранок, доброго ранку,
        добрий вечір, доброго вечора, здрастуйте, здрастуй, здоровенькі були, здоров, хай, салют, агов,
        як справи, як ти, як ви, є хтось, тут є хтось, хтось є, хтось тут є, алло, ало,
        привет, приветик, приветствую, здравствуйте, здравствуй, здрасьте, здрасте, здорово, добрый день,
        доброе утро, добрый вечер, доброй ночи, доброго времени суток, как дела, как ты, как вы, как поживаете,
        есть кто, есть кто тут, есть кто нибудь, кто нибудь есть, тут есть кто, ау,
        pryvit, pryvet, privit, privet, privetik, vitayu, vitaju, vitaiu, dobryi den, dobryy den, dobriy den,
        dobrij den, dobryj den, dobrogo dnya, dobroho dnia, dobroho dnya, zdravstvuyte, zdravstvuite,
        zdravstvujte, zdrastvuyte, zdraste, zdrastuyte, dobroe utro, dobryi vecher, dobriy vecher,
        dobryi vechir, dobryy vechir, kak dela, yak spravy, hai, salut
    """,
}

_FILLER = """
    please, pls, plz, plez, pleeease, pleas, bot, the bot, dear bot, chatbot, friend, my friend, buddy, mate,
    there, all, everyone, guys, folks, team, you, u, again, very, so, much, a lot, lot, really, oh, ah, well, um,
    hmm, and,
    будь ласка, будьласка, бот, ботик, друже, друзі, хлопці, всім, вам, тобі, тебе, вас, ще, ще раз,
    дуже, щиро, велике, ну, ой, ах, і, та, а,
    пожалуйста, пожалуйсто, пожалуста, плиз, плз, пж, друг, ребята, всем, вам, тебе, вас, ещё, еще, очень,
    огромное, большое, ну, ой, ах, и, а,
    pozhaluysta, pozhaluista, bud laska, bud laska, budlaska
"""

_ASK = """
    i, id, im, want, wanna, need, would, like, love, prefer, talk, speak, chat, write, to, with, me, my, can,
    could, may, let, connect, give, get, transfer, put, through, switch, call, is, are, there, any, available,
    now, just, pass, send, bring, find, reach, contact, forward, escalate, some, somebody, someone, a, an, the,
    хочу, я, мені, мене, мною, зі мною, потрібен, потрібна, потрібно, треба, покличте, поклич, позвіть, позви,
    дайте, дай, з, із, зі, до, на, зєднайте, зєднай, зєднати, звяжіть, звяжи, звязатися, звязок, переключіть,
    переключи, переведіть, переведи, можна, можу, поговорити, говорити, розмовляти, спілкуватися,
    поспілкуватися, є, тут, де, прошу, нехай, напишіть, напише, хтось, кого, зараз, просто,
    мне, меня, мной, со мной, нужен, нужна, нужно, надо, позовите, позови, позвать, зовите, зови, вызовите,
    вызови, с, со, к, соедините, соедини, соединить, свяжите, свяжи, связаться, связь, переключите,
    переключи, переведите, переведи, можно, могу, поговорить, говорить, разговаривать, общаться,
    пообщаться, есть, тут, где, прошу, пусть, напишет, давайте, давай, кто, кого нибудь, кто нибудь, сейчас,
    khochu, hochu, ya, mne, meni, pozovite, pozovi, poklychte, dayte, daite, s, z, mozhno, mozhna, nuzhen,
    potriben, potribna, pogovorit, pohovoryty
"""

_LOOKALIKES = str.maketrans("aceiopxykmthb", "асеіорхукмтнв")
_APOSTROPHES = str.maketrans("", "", "'’ʼ`‘´ʻ")
_NOT_A_WORD = re.compile(r"[\W_]+")
_REPEATS = re.compile(r"(.)\1+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[a-z]")


def _word(word: str) -> str:
    if _CYRILLIC.search(word) and _LATIN.search(word):
        word = word.translate(_LOOKALIKES)
    return _REPEATS.sub(r"\1", word)


def words(text: str) -> list[str]:
    """The message as the word lists see it (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е").translate(_APOSTROPHES)
    return [_word(w) for w in _NOT_A_WORD.sub(" ", text).split()]


def _phrases(listing: str) -> list[tuple[str, ...]]:
    return [tuple(words(p)) for p in listing.split(",") if p.strip()]


@cache
def _lexicon() -> tuple[dict[tuple[str, ...], SmallTalk | _Role], int]:
    """Every phrase -> its kind or role, and the longest phrase (in words).

    Built once, on first use. A phrase listed twice keeps its first meaning, in the
    order kinds (by priority), filler, ask: "хай" is a greeting, never a filler.
    """
    lexicon: dict[tuple[str, ...], SmallTalk | _Role] = {}
    for kind in _PRIORITY:
        for phrase in _phrases(_PHRASES[kind]):
            lexicon.setdefault(phrase, kind)
    for role, listing in ((_Role.FILLER, _FILLER), (_Role.ASK, _ASK)):
        for phrase in _phrases(listing):
            lexicon.setdefault(phrase, role)
    return lexicon, max(len(p) for p in lexicon)


def _segment(tokens: list[str]) -> list[SmallTalk | _Role] | None:
    """Cover the whole message with known phrases: fewest pieces, then fewest ask words.

    A small dynamic programme over at most MAX_WORDS words; None when some word
    belongs to no phrase.
    """
    lexicon, longest = _lexicon()
    best: list[tuple[int, int, list[SmallTalk | _Role]] | None] = [None] * (len(tokens) + 1)
    best[0] = (0, 0, [])
    for start in range(len(tokens)):
        here = best[start]
        if here is None:
            continue
        for end in range(start + 1, min(len(tokens), start + longest) + 1):
            meaning = lexicon.get(tuple(tokens[start:end]))
            if meaning is None:
                continue
            candidate = (here[0] + 1, here[1] + (meaning is _Role.ASK), [*here[2], meaning])
            there = best[end]
            if there is None or candidate[:2] < there[:2]:
                best[end] = candidate
    found = best[len(tokens)]
    return None if found is None else found[2]


def classify(text: str) -> SmallTalk | None:
    """What small talk ``text`` is, or None when it is (also) anything else."""
    if not text or len(text) > _MAX_CHARS:
        return None
    tokens = words(text)
    if not tokens or len(tokens) > MAX_WORDS:
        return None
    pieces = _segment(tokens)
    if pieces is None:
        return None
    kinds = {p for p in pieces if isinstance(p, SmallTalk)}
    if _Role.ASK in pieces and SmallTalk.WANTS_PERSON not in kinds:
        return None  # "I want" / "з" / "can" mean something only with a person after them
    return next((kind for kind in _PRIORITY if kind in kinds), None)


def reply(kind: SmallTalk, _: Callable[[str], str]) -> str:
    """The bot's own answer to small talk, in the language of ``_`` (``i18n.gettext_for``).

    WANTS_PERSON has none here: it is a hand-over, with the hand-over's notice.
    """
    if kind is SmallTalk.WANTS_PERSON:
        raise ValueError("WANTS_PERSON is answered by a hand-over, not by small talk")
    texts = {
        SmallTalk.GREETING: _("Hello! I am the support bot. Ask me about our shop and its service, in text or "
                              "by voice, and I will answer from our knowledge base."),
        SmallTalk.THANKS: _("Glad to help! If you have another question, just ask."),
        SmallTalk.GOODBYE: _("Goodbye! Write or send a voice message whenever you have a question."),
        SmallTalk.WHO_ARE_YOU: _("I am the support bot. I answer questions about our shop and its service from "
                                 "our knowledge base, in text or voice."),
        SmallTalk.WHAT_CAN_YOU_DO: _("Ask me anything about our shop and its service: write your question in "
                                     "your own words or send a voice message, and I will answer from our "
                                     "knowledge base."),
        SmallTalk.ARE_YOU_BOT: _("Yes, I am a bot: I answer from our knowledge base, in text or voice."),
    }
    if kind in (SmallTalk.THANKS, SmallTalk.GOODBYE):
        return texts[kind]
    return f"{texts[kind]} {_('To talk to a person, send /operator.')}"
