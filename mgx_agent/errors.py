"""The error hierarchy of the team engine.

Every failure the engine reports to a caller is an ``MGXError`` with a stable ``code`` so the
backend can store it on a run (``error.code`` / ``error.message``) without parsing text.
"""

from __future__ import annotations


class MGXError(Exception):
    """Base of every error raised by mgx_agent."""

    code = "mgx_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LLMError(MGXError):
    """A call to a language model failed after the retries it was allowed."""

    code = "llm_error"


class LLMAuthError(LLMError):
    """The provider refused the credentials (401/403)."""

    code = "llm_auth"


class LLMRateLimitError(LLMError):
    """The provider kept answering 429 after every retry."""

    code = "llm_rate_limited"


class LLMTimeoutError(LLMError):
    """The provider did not answer within the configured timeout."""

    code = "llm_timeout"


class LLMConnectionError(LLMError):
    """The provider could not be reached."""

    code = "llm_unreachable"


class LLMBadResponseError(LLMError):
    """The provider answered with something that is not a valid chat completion."""

    code = "llm_bad_response"


class LLMTruncatedError(LLMError):
    """The reply was cut off at the output token limit (finish_reason "length"), also after
    the model was asked once for a shorter answer."""

    code = "llm_truncated"


class LLMReplyTooLargeError(LLMError):
    """The reply was larger than ``MGX_LLM_MAX_REPLY_BYTES``; it was not read to the end."""

    code = "llm_reply_too_large"


class LLMStreamInterruptedError(LLMError):
    """Every attempt's stream ended before the reply was complete (no finish_reason and no
    ``[DONE]``): the connection or a proxy dropped it."""

    code = "llm_stream_interrupted"


class LLMRefusedError(LLMError):
    """The model refused to answer (a ``refusal`` or finish_reason "content_filter")."""

    code = "llm_refused"


class BudgetExceededError(MGXError):
    """The run's ``budget_usd`` would be exceeded by the next call."""

    code = "budget_exceeded"


class MalformedOutputError(MGXError):
    """A role's output could not be parsed, even after one corrective re-ask."""

    code = "malformed_output"

    def __init__(self, role: str, problem: str) -> None:
        super().__init__(f"{role}: {problem}")
        self.role = role
        self.problem = problem
