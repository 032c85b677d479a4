"""Why a document could not be de-identified.

Each error names what was wrong (a field, a tag, a media type) and never quotes the content:
the content is a patient's. Callers turn them into INVALID_ARGUMENT (the input) or
FAILED_PRECONDITION (the deployment cannot do it); either way nothing identifiable is sent.
"""

from __future__ import annotations


class DeidentificationError(ValueError):
    """The content cannot be de-identified as given (unsupported, malformed, undecodable)."""


class TextFinderUnavailable(RuntimeError):
    """No OCR engine: burned-in text cannot be looked for, so pixels cannot be cleaned.

    Never answered by sending the pixels as they are: a name burned into an X-ray is exactly
    what de-identification exists to remove.
    """
