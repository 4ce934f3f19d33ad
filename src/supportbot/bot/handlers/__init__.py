from aiogram import Router

from supportbot.bot.handlers import commands, csat, feedback, messages, voice


def get_routers() -> list[Router]:
    # Fresh routers per dispatcher (a router can be attached to one parent only).
    # Order matters: commands before free text, feedback callbacks before the catch-all,
    # voice/audio before the catch-all that answers other kinds politely; the rating and "ask the
    # bot instead" callbacks before feedback's catch-all for unknown callback data.
    return [commands.build_router(), csat.build_router(), feedback.build_router(), voice.build_router(),
            messages.build_router()]
