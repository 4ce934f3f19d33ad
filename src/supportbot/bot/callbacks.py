from aiogram.filters.callback_data import CallbackData


class FeedbackCallback(CallbackData, prefix="fb"):
    """Helpful / Not helpful under an automatic answer (``message_id`` = our Message row)."""

    message_id: int
    helpful: bool


class RatingCallback(CallbackData, prefix="csat"):
    """A score (1-5) under "Did we solve your problem?" (``message_id`` = the question's Message row)."""

    message_id: int
    score: int


class BackToBotCallback(CallbackData, prefix="tobot"):
    """"Ask the bot instead" under a notice that a person will reply (``ticket_id``: the waiting ticket)."""

    ticket_id: int
