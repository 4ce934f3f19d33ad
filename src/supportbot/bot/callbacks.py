from aiogram.filters.callback_data import CallbackData


class FeedbackCallback(CallbackData, prefix="fb"):
    """Helpful / Not helpful under an automatic answer (``message_id`` = our Message row)."""

    message_id: int
    helpful: bool
