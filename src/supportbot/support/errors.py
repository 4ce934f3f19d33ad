"""Why a support-desk workflow refused to act.

Services raise these; front doors (the admin, the bot, the CLI) show ``message`` to
the person and may branch on ``code``, which never changes. Messages are marked with
``gettext_noop`` (plain English here; the admin shows ``gettext(message)``). Each is a ``ValueError``,
so older callers that catch that still work. A refused workflow writes nothing.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop


class DomainError(ValueError):
    """A workflow refused: ``code`` is stable (for programs), ``message`` is for people."""

    code = "domain_error"
    message = gettext_noop("The request was refused.")

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class EmptyReply(DomainError):
    code = "empty_reply"
    message = gettext_noop("The reply is empty.")


class TicketClosed(DomainError):
    code = "ticket_closed"
    message = gettext_noop("The ticket is closed; the customer's next message opens a new one.")


class NotAnOperatorAnswer(DomainError):
    """Only a person's answer may become an FAQ entry (never the FAQ's or an LLM's own output)."""

    code = "not_an_operator_answer"
    message = gettext_noop("Only an operator's answer can be saved to the FAQ.")


class NoQuestionBeforeAnswer(DomainError):
    code = "no_question_before_answer"
    message = gettext_noop("No customer question precedes this answer.")


class NotAHelpfulFaqAnswer(DomainError):
    """Only the question behind an FAQ answer the customer marked Helpful may become a phrasing."""

    code = "not_a_helpful_faq_answer"
    message = gettext_noop("Only a question whose FAQ answer the customer marked Helpful can become a phrasing.")
    NOT_FROM_FAQ = gettext_noop("Only a question answered from the FAQ can become a phrasing.")


class AlreadyAPhrasing(DomainError):
    code = "already_a_phrasing"
    message = gettext_noop("This question is already one of the entry's phrasings (or has no text).")


class CustomerHasOpenTicket(DomainError):
    """One active ticket per customer: a closed ticket cannot reopen beside a newer open one."""

    code = "customer_has_open_ticket"
    message = gettext_noop("The customer has a newer open ticket; continue there instead of reopening this one.")
