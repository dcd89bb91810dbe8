"""What part of a sequence's text may be streamed yet: none that could still turn out to start a stop string.

The output committer cuts the text where a stop string begins, but only once the whole stop string has been
generated; a stream that sent every delta at once would already have sent the stop string's first part. So
while a sequence runs, the longest end of its text that is a proper prefix of one of its stop strings is held
back; once it finishes, the rest of its (cut) text is released.
"""

from __future__ import annotations

from collections.abc import Sequence


def held_back(text: str, stop: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string."""
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


class TextRelease:
    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(stop)
        self.sent = 0  # characters released so far

    def take(self, text: str, finished: bool) -> str:
        """The text to release now, given the sequence's whole text so far."""
        end = len(text) if finished or not self.stop else len(text) - held_back(text, self.stop)
        if end <= self.sent:
            return ""
        delta = text[self.sent : end]
        self.sent = end
        return delta
