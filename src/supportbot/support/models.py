"""The support desk: customers, tickets, an append-only message log, the FAQ."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from supportbot.support.choices import AUTOMATIC_SOURCES, LLM_SOURCES, Actor, MessageSource


class Language(models.TextChoices):
    UK = "uk", "Українська"
    RU = "ru", "Русский"
    EN = "en", "English"


class TelegramUser(models.Model):
    id = models.BigIntegerField(_("Telegram id"), primary_key=True, help_text=_("Telegram user id"))
    username = models.CharField(_("username"), max_length=64, blank=True)
    first_name = models.CharField(_("first name"), max_length=128, blank=True)
    last_name = models.CharField(_("last name"), max_length=128, blank=True)
    language_code = models.CharField(_("language code"), max_length=16, blank=True)
    is_blocked = models.BooleanField(_("blocked"), default=False, help_text=_("The user blocked the bot"))
    first_seen = models.DateTimeField(_("first seen"), auto_now_add=True)
    last_seen = models.DateTimeField(_("last seen"), auto_now=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p) or str(self.id)
        return f"{name} (@{self.username})" if self.username else name


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        WITH_OPERATOR = "with_operator", _("With operator")
        ANSWERED = "answered", _("Answered")
        #: An operator solved it: the customer is asked for a rating (CSAT), the bot answers again,
        #: and a message within ``REOPEN_WINDOW_HOURS`` reopens this ticket instead of a new one.
        RESOLVED = "resolved", _("Resolved")
        CLOSED = "closed", _("Closed")

    ACTIVE = (Status.OPEN, Status.WITH_OPERATOR, Status.ANSWERED)
    #: Tickets a person must act on: the queue shows these first, longest waiting first.
    WAITING = (Status.WITH_OPERATOR,)

    user = models.ForeignKey(TelegramUser, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="tickets")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    handed_over_at = models.DateTimeField(_("handed over at"), null=True, blank=True)
    waiting_notice_sent = models.BooleanField(
        _("waiting notice sent"), default=False,
        help_text=_("The customer was told a person will reply (sent once per hand-over)")
    )
    # The operator desk: who owns the ticket, since when the customer waits for a person.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("assignee"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_tickets", help_text=_("The operator who took the ticket"),
    )
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    waiting_since = models.DateTimeField(
        _("waiting since"), null=True, blank=True, db_index=True,
        help_text=_("Since when the customer waits for a person (cleared by an operator's reply)"),
    )
    overdue_notified_at = models.DateTimeField(
        _("overdue notified at"), null=True, blank=True,
        help_text=_("When the operators were last reminded that this ticket waits too long"),
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("ticket")
        verbose_name_plural = _("tickets")
        ordering = ["-updated_at"]
        constraints = [
            # One open ticket per customer at a time, enforced by the database.
            models.UniqueConstraint(
                fields=["user"],
                condition=~Q(status="closed"),
                name="one_active_ticket_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.user} [{self.get_status_display()}]"


class TicketStatusChange(models.Model):
    """Audit row for every status change: who, why, when."""

    Actor = Actor

    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), on_delete=models.CASCADE,
                               related_name="status_changes")
    old_status = models.CharField(_("old status"), max_length=16, choices=Ticket.Status.choices, blank=True)
    new_status = models.CharField(_("new status"), max_length=16, choices=Ticket.Status.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("changed by"), null=True, blank=True, on_delete=models.SET_NULL
    )
    actor = models.CharField(_("actor"), max_length=32, choices=Actor.choices, help_text=_("Who changed the status"))
    reason = models.CharField(_("reason"), max_length=255)
    draft_answer = models.TextField(
        _("draft answer"), blank=True,
        help_text=_("LLM_ANSWER_MODE=draft: the LLM's fact-checked answer to the question handed over, "
                  "never sent: for the operator to use, edit or ignore"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("ticket status change")
        verbose_name_plural = _("ticket status changes")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.old_status or '—'} → {self.new_status} ({self.get_actor_display()}): {self.reason[:60]}"


class FaqEntry(models.Model):
    key = models.SlugField(_("key"), max_length=100, unique=True,
                           help_text=_("Stable identifier used by import/export"))
    question = models.TextField(_("question"))
    answer = models.TextField(_("answer"))
    language = models.CharField(_("language"), max_length=8, choices=Language.choices, default=Language.EN)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("FAQ entry")
        verbose_name_plural = _("FAQ entries")
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}: {self.question[:60]}"


class FaqPhrasing(models.Model):
    """Another way customers ask the same question."""

    entry = models.ForeignKey(FaqEntry, verbose_name=_("entry"), on_delete=models.CASCADE, related_name="phrasings")
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("FAQ phrasing")
        verbose_name_plural = _("FAQ phrasings")
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text[:80]


class FaqEmbedding(models.Model):
    """A stored vector for one FAQ text (question or phrasing) under one model.

    Keyed by the hash of the embedded text, so unchanged text is never embedded
    twice, by any process. Rows are immutable: changed text gets a new row.
    """

    entry = models.ForeignKey(FaqEntry, verbose_name=_("entry"), on_delete=models.CASCADE, related_name="embeddings")
    phrasing = models.ForeignKey(
        FaqPhrasing, verbose_name=_("phrasing"), null=True, blank=True, on_delete=models.CASCADE,
        related_name="embeddings"
    )
    model_name = models.CharField(_("model name"), max_length=200)
    text_hash = models.CharField(_("text hash"), max_length=64)
    dim = models.PositiveIntegerField(_("dim"))
    vector = models.BinaryField(_("vector"), help_text=_("float32 little-endian, L2-normalised"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("FAQ embedding")
        verbose_name_plural = _("FAQ embeddings")
        constraints = [
            models.UniqueConstraint(
                fields=["entry", "model_name", "text_hash"], name="one_vector_per_text_and_model"
            )
        ]
        indexes = [models.Index(fields=["model_name", "id"])]


class KnowledgeVersion(models.Model):
    """A counter bumped after every FAQ index change; processes poll it (cheap)."""

    model_name = models.CharField(_("model name"), max_length=200, unique=True)
    version = models.PositiveBigIntegerField(_("version"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("knowledge version")
        verbose_name_plural = _("knowledge versions")


class InternalNote(models.Model):
    """An operator's note on a ticket: for the team, never sent to the customer."""

    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("author"), null=True, blank=True,
                               on_delete=models.SET_NULL)
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("internal note")
        verbose_name_plural = _("internal notes")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.text[:80]


class CannedReply(models.Model):
    """A reply operators insert with a shortcut (``/shortcut``), one text per language."""

    shortcut = models.SlugField(_("shortcut"), max_length=50, help_text=_("Typed as /shortcut in the reply box"))
    language = models.CharField(_("language"), max_length=8, choices=Language.choices, default=Language.EN)
    title = models.CharField(_("title"), max_length=100)
    text = models.TextField(_("text"))
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("canned reply")
        verbose_name_plural = _("canned replies")
        ordering = ["shortcut", "language"]
        constraints = [
            models.UniqueConstraint(fields=["shortcut", "language"], name="one_canned_reply_per_language")
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut} [{self.language}] {self.title}"


class OperatorAccount(models.Model):
    """An operator's Telegram account (the operators' group desk): who wrote in a topic."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                                related_name="telegram_account")
    telegram_user_id = models.BigIntegerField(_("Telegram user id"), unique=True)
    telegram_username = models.CharField(_("Telegram username"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("operator account")
        verbose_name_plural = _("operator accounts")

    def __str__(self) -> str:
        return f"{self.user} = Telegram {self.telegram_user_id}"


class ForumTopic(models.Model):
    """The customer's topic in the operators' forum group (``OPERATOR_CHAT_ID``), reused for
    their later tickets; recreated when deleted by hand."""

    customer = models.OneToOneField(TelegramUser, verbose_name=_("customer"), on_delete=models.CASCADE,
                                    related_name="forum_topic")
    chat_id = models.BigIntegerField(_("chat id"))
    message_thread_id = models.BigIntegerField(_("topic id"))
    name = models.CharField(_("name"), max_length=128)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("forum topic")
        verbose_name_plural = _("forum topics")
        constraints = [
            models.UniqueConstraint(fields=["chat_id", "message_thread_id"], name="one_customer_per_topic")
        ]

    def __str__(self) -> str:
        return f"{self.name} (topic {self.message_thread_id})"


class MessageQuerySet(models.QuerySet):
    def stuck(self, *, lease: timedelta, now: datetime | None = None) -> MessageQuerySet:
        """Messages a bot worker claimed for sending longer than ``lease`` ago and never
        finished: the worker stopped mid-send (the outbox lease, ``OUTBOX_LEASE_SECONDS``).
        Whether Telegram got that attempt is unknown; a running bot re-sends it once."""
        cutoff = (now or timezone.now()) - lease
        return self.filter(delivery_status=Message.Delivery.SENDING, delivery_claimed_at__lt=cutoff)


class Message(models.Model):
    class Direction(models.TextChoices):
        IN = "in", _("From customer")
        OUT = "out", _("To customer")
        #: A copy posted into the operators' group topic (``OPERATOR_CHAT_ID``): not part of the
        #: customer's conversation, delivered through the same path to ``chat_id``/``message_thread_id``.
        DESK = "desk", _("To operators' group")

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        VOICE = "voice", _("Voice")
        PHOTO = "photo", _("Photo")
        STICKER = "sticker", _("Sticker")
        DOCUMENT = "document", _("Document")
        OTHER = "other", _("Other")

    Source = MessageSource

    class Delivery(models.TextChoices):
        NOT_APPLICABLE = "", "—"
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    LLM_SOURCES = LLM_SOURCES
    AUTOMATIC_SOURCES = AUTOMATIC_SOURCES

    objects = MessageQuerySet.as_manager()

    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(_("direction"), max_length=4, choices=Direction.choices)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.TEXT)
    text = models.TextField(_("text"), blank=True)
    telegram_message_id = models.BigIntegerField(_("Telegram message id"), null=True, blank=True)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    faq_entry = models.ForeignKey(
        FaqEntry, verbose_name=_("FAQ entry"), null=True, blank=True, on_delete=models.SET_NULL, related_name="answers"
    )
    score = models.FloatField(_("score"), null=True, blank=True, help_text=_("Match score behind an FAQ answer"))
    processing_ms = models.PositiveIntegerField(_("processing (ms)"), null=True, blank=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("operator"), null=True, blank=True, on_delete=models.SET_NULL
    )
    in_reply_to = models.ForeignKey(
        "self", verbose_name=_("in reply to"), null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    delivery_status = models.CharField(
        _("delivery status"), max_length=8, choices=Delivery.choices, blank=True, default=Delivery.NOT_APPLICABLE
    )
    delivery_attempts = models.PositiveSmallIntegerField(_("delivery attempts"), default=0)
    delivery_error = models.CharField(_("delivery error"), max_length=255, blank=True)
    # Outbox (operator replies): when a bot worker last claimed the row for sending. A row
    # left "sending" longer than OUTBOX_LEASE_SECONDS was abandoned by a crashed worker.
    delivery_claimed_at = models.DateTimeField(
        _("delivery claimed at"), null=True, blank=True,
        help_text=_("When a bot worker last claimed this reply for sending (outbox)")
    )
    # The delivery path (bot.delivery): a row that failed for a reason worth retrying (429, 5xx,
    # network) goes back to "pending" and is not taken again before this time.
    delivery_not_before = models.DateTimeField(
        _("delivery not before"), null=True, blank=True,
        help_text=_("A retried message is not sent again before this time")
    )
    delivery_parts_sent = models.PositiveSmallIntegerField(
        _("delivery parts sent"), default=0,
        help_text=_("Parts of a long text (over 4,096 characters) already delivered")
    )
    # Where a DESK message goes (the operators' group and the ticket's topic); None for the
    # customer's own chat.
    chat_id = models.BigIntegerField(_("chat id"), null=True, blank=True,
                                     help_text=_("Target chat, when not the customer's"))
    message_thread_id = models.BigIntegerField(_("topic id"), null=True, blank=True,
                                               help_text=_("Forum topic of the target chat"))
    quote_reply = models.BooleanField(
        _("quote reply"), default=False, help_text=_("Sent in Telegram as a reply quoting the customer's message")
    )
    delivery_interrupted = models.BooleanField(
        _("delivery interrupted"), default=False,
        help_text=_("A bot stopped while sending this reply, so it is unknown whether Telegram got that "
                  "attempt: it was re-sent once and may have arrived twice (or, interrupted twice, given up)"),
    )
    # Voice messages: ``text`` holds the transcript, these say how it was made.
    transcript_language = models.CharField(_("transcript language"), max_length=8, blank=True)
    transcript_probability = models.FloatField(
        _("transcript probability"), null=True, blank=True,
        help_text=_("Detected language probability among the configured languages")
    )
    audio_seconds = models.FloatField(_("audio seconds"), null=True, blank=True,
                                      help_text=_("Length of the voice message"))
    transcription_ms = models.PositiveIntegerField(_("transcription (ms)"), null=True, blank=True)
    audio_file = models.CharField(
        _("audio file"), max_length=255, blank=True,
        help_text=_("Kept audio (KEEP_AUDIO), relative to the data dir's audio folder; cleared when it expires"),
    )
    # LLM answers (source local_llm / api_llm): which model, grounded in what, how fast.
    llm_model = models.CharField(_("LLM model"), max_length=200, blank=True)
    context_entries = models.JSONField(
        _("context entries"), default=list, blank=True,
        help_text=_("FAQ entries given to the model as context: [{id, key, score}] (kept if entries change)"),
    )
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(
        _("first token (ms)"), null=True, blank=True, help_text=_("From the start of the LLM step to its first token")
    )
    llm_ms = models.PositiveIntegerField(_("LLM time (ms)"), null=True, blank=True,
                                         help_text=_("The LLM step's total time"))
    # The web desk's reply form: a random token per rendered form, unique, so a double submit
    # of one reply queues it once (support.desk.reply_once).
    reply_token = models.CharField(
        _("reply token"), max_length=64, null=True, blank=True, unique=True, editable=False,
        help_text=_("The idempotency token of the desk's reply form that sent this reply"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["delivery_status", "id"])]

    def __str__(self) -> str:
        arrow = "→" if self.direction == self.Direction.OUT else "←"
        return f"{arrow} [{self.source}] {self.text[:60]}"

    @property
    def is_automatic_answer(self) -> bool:
        """The bot answered without a person (FAQ or LLM): the customer may rate it."""
        return self.direction == self.Direction.OUT and self.source in AUTOMATIC_SOURCES

    def is_stuck(self, *, lease: timedelta, now: datetime | None = None) -> bool:
        """This message is one of :meth:`MessageQuerySet.stuck` (same rule, on one row)."""
        return (self.delivery_status == self.Delivery.SENDING and self.delivery_claimed_at is not None
                and self.delivery_claimed_at < (now or timezone.now()) - lease)


class Feedback(models.Model):
    message = models.ForeignKey(Message, verbose_name=_("message"), on_delete=models.CASCADE, related_name="feedback")
    helpful = models.BooleanField(_("helpful"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["message"], name="one_feedback_per_answer")]


class CsatRating(models.Model):
    """The customer's rating after an operator resolved the ticket (1-5), answering the
    rating question (``question``, one rating per question)."""

    question = models.OneToOneField(Message, verbose_name=_("question"), on_delete=models.CASCADE, related_name="csat")
    ticket = models.ForeignKey(Ticket, verbose_name=_("ticket"), on_delete=models.CASCADE, related_name="ratings")
    operator = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("operator"), null=True, blank=True,
                                 on_delete=models.SET_NULL,
                                 related_name="ratings", help_text=_("The operator who resolved the ticket"))
    score = models.PositiveSmallIntegerField(_("score"), help_text=_("1 (bad) to 5 (excellent)"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("CSAT rating")
        verbose_name_plural = _("CSAT ratings")
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(score__gte=1) & Q(score__lte=5), name="csat_score_1_to_5")]

    def __str__(self) -> str:
        return f"ticket #{self.ticket_id}: {self.score}/5"


class UpdateClaim(models.Model):
    """One Telegram update taken by one process: the row IS the claim.

    Telegram redelivers an update it got no 2xx for (for up to 24 h), may deliver it to two
    webhook workers at once, and updates arrive out of order: so each ``update_id`` is
    claimed by inserting this row under a unique constraint, before any work, and the
    insert that loses is told so by the database (``services.claim_update``). Update ids
    are per bot, so the bot's id is part of the key (two bots on one database never collide).
    Rows older than Telegram's redelivery window are pruned (``services.prune_update_claims``).
    """

    bot_id = models.BigIntegerField(_("bot id"), help_text=_("Telegram id of the bot the update was sent to"))
    update_id = models.BigIntegerField(_("update id"))
    claimed_at = models.DateTimeField(_("claimed at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("update claim")
        verbose_name_plural = _("update claims")
        constraints = [models.UniqueConstraint(fields=["bot_id", "update_id"], name="one_claim_per_update")]

    def __str__(self) -> str:
        return f"update {self.update_id} of bot {self.bot_id}"
