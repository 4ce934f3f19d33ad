"""LLM fallback answers: a local GGUF model, then an OpenAI-compatible API, grounded in the FAQ.

* :mod:`.base`: the :class:`Answerer` protocol every step implements.
* :mod:`.local`, :mod:`.engines`, :mod:`.model_files`: the local step (llama.cpp or
  GPT4All) in a dedicated worker thread with a bounded queue.
* :mod:`.api`: the OpenAI-compatible API step.
* :mod:`.prompt`: grounding prompt and answer checks (refusal marker, echo, length).
* :mod:`.chain`: the steps in order, each with its switch and timeout.
* :mod:`.context`: the FAQ entries, ticket history and hourly limit from the database.
* :mod:`.setup`: the chain as the settings describe it.
"""

from supportbot.llm.base import Answerer, ChatMessage, Chunk, StepUnavailable
from supportbot.llm.chain import AnswerChain, AnswerStream, ChainStep, LlmResult, StepReport

__all__ = ["AnswerChain", "AnswerStream", "Answerer", "ChainStep", "ChatMessage", "Chunk", "LlmResult",
           "StepReport", "StepUnavailable"]
