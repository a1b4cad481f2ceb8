"""How servewise counts text as tokens without a tokenizer, wherever it must (the twin's prompts, a
captured log turned into a trace): the way BPE vocabularies (Llama, Qwen, Mistral) split English.

A word of up to 7 letters is one token, a longer word one token per 5 letters, each digit or punctuation
mark one token: about ``words * 1.3`` on prose, ``characters / 4`` on average text, and exact for
servewise's synthetic prompts of common words. The tokens themselves (not just their count) are kept, so
two texts can be compared block by block for the prefix they share.
"""

from __future__ import annotations

import re

_PIECES = re.compile(r"[^\W\d_]+|\S")  # letter runs, and each other visible character


def word_tokens(text: str) -> list[str]:
    """``text`` as estimated tokens: short words whole, a longer word cut every 5 letters."""
    tokens: list[str] = []
    for piece in _PIECES.findall(text):
        if len(piece) <= 7:
            tokens.append(piece)
        else:
            tokens.extend(piece[i : i + 5] for i in range(0, len(piece), 5))
    return tokens
