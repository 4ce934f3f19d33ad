"""The support desk's vocabulary: who wrote a message, who changed a ticket.

Defined once, here, for the models and for code that must not set up Django models
(the answer pipeline names its answer sources with these values). This module needs
no settings and no app registry: ``TextChoices`` is a plain ``str`` enum with labels.
"""

from __future__ import annotations

from django.db.models.enums import TextChoices
from django.utils.translation import gettext_lazy as _


class MessageSource(TextChoices):
    """Who wrote a message of the log (``Message.Source``)."""

    USER = "user", _("Customer")
    FAQ = "faq", _("FAQ")
    LOCAL_LLM = "local_llm", _("Local LLM")
    API_LLM = "api_llm", _("API LLM")
    OPERATOR = "operator", _("Operator")
    SYSTEM = "system", _("System")
    #: The bot's own reply to a greeting, thanks, "who are you"... (``supportbot.smalltalk``):
    #: not a notice like SYSTEM, not an answer to rate, never given to an LLM as history.
    SMALLTALK = "smalltalk", _("Small talk")
    #: "Did we solve your problem?" with rating buttons 1-5, recorded when an operator resolves
    #: the ticket (``support.aftercare``): its own source so the buttons and the rating check
    #: know it, and never an answer to rate or LLM history.
    CSAT = "csat", _("Rating question")


#: Answers written by a language model (the hourly limit, the admin's model details).
LLM_SOURCES = (MessageSource.LOCAL_LLM, MessageSource.API_LLM)
#: Answers the bot chose without a person: the customer may rate them (Helpful / Not helpful).
AUTOMATIC_SOURCES = (MessageSource.FAQ, *LLM_SOURCES)


class Actor(TextChoices):
    """Who changed a ticket's status (``TicketStatusChange.actor``)."""

    CUSTOMER = "customer", _("Customer")
    BOT = "bot", _("Bot")
    OPERATOR = "operator", _("Operator")
    SYSTEM = "system", _("System")
