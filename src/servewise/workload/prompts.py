"""Synthetic prompts of a requested token length.

Without a tokenizer, prompts are runs of common short English words, each of which is one token in the
BPE vocabularies of Llama, Qwen, Mistral and GPT models, so N words ~ N tokens (the chat template adds a
few more). The server's ``usage.prompt_tokens`` then reports the true count, which every summary shows
beside the requested one. With a tokenizer (a ``tokenizer.json``), lengths are exact before the template.
Every request starts at a different seeded offset in a long text, so prompts share no prefix and a prefix
cache cannot flatter the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from servewise.spec.errors import SpecError

WORDS = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "she", "other", "its", "may", "these", "about", "some", "two", "them", "than", "into", "only", "new", "time", "could", "also", "my", "any", "first", "then", "do", "most", "over", "made", "like", "did", "many", "well", "after", "way", "such", "should", "where", "our", "just", "man", "year", "those", "people", "what", "each", "back", "much", "work", "how", "still", "being", "use", "make", "good", "between", "state", "great", "must", "through", "high", "life", "under", "same", "both", "own", "never", "day", "long", "place", "old", "world", "here", "why", "show", "last", "end", "part", "too", "take", "three", "form", "right", "small", "since", "help", "part", "home", "hand", "high", "line", "light", "left", "big", "set", "need", "put", "read", "let", "keep", "land", "water", "name", "house", "play", "open", "run", "turn", "move", "live", "find", "give", "know", "think", "look", "come", "want", "tell", "ask", "seem", "feel", "try", "call", "leave", "mean", "city", "tree", "farm", "road", "fire", "ship", "rock", "sand", "rain", "snow", "wind", "star", "moon", "hill", "lake", "river", "field", "stone", "horse", "bird", "fish", "bread", "milk", "salt", "gold", "iron", "wood", "glass", "paper", "book", "door", "wall", "room", "table", "chair", "bed", "floor", "window", "box", "car", "train", "plane", "boat", "bridge", "tower", "market", "garden", "school", "church", "music", "color", "sound", "voice", "story", "song", "game", "team", "group", "class", "plan", "idea", "fact", "point", "case", "rule", "law", "order", "power", "money", "value", "price", "cost", "rate", "level", "area", "side", "top", "bottom", "front", "center", "north", "south", "east", "west", "summer", "winter", "spring", "fall", "morning", "night", "week", "month"]


class PromptSynthesizer:
    """Cuts prompts of N tokens out of one long seeded text; slicing keeps the per-request cost tiny."""

    def __init__(self, seed: int, tokenizer_path: str | None = None, corpus_words: int = 200_000) -> None:
        rng = np.random.default_rng([seed, 7])
        picks = rng.integers(0, len(WORDS), size=corpus_words)
        words = [WORDS[i] for i in picks]
        self._text = " ".join(words)
        self._tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path else None
        if self._tokenizer is not None:
            encoding = self._tokenizer.encode(self._text, add_special_tokens=False)
            self._ids = encoding.ids
            self._starts = [start for start, _ in encoding.offsets]
        else:
            lengths = np.fromiter((len(w) + 1 for w in words), dtype=np.int64, count=len(words))
            self._starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).tolist()
        self._units = len(self._starts)

    @property
    def exact(self) -> bool:
        return self._tokenizer is not None

    def prompt(self, tokens: int, offset: int) -> str:
        """About ``tokens`` tokens (exactly, with a tokenizer) starting at unit ``offset`` of the text."""
        tokens = max(1, min(tokens, self._units - 1))
        start = offset % (self._units - tokens)
        if self._tokenizer is not None:
            return self._tokenizer.decode(self._ids[start : start + tokens])
        end = self._starts[start + tokens] - 1
        return self._text[self._starts[start] : end]

    def count(self, text: str) -> int | None:
        """Tokens in ``text`` when a tokenizer is configured (used for output counts when usage is missing)."""
        if self._tokenizer is None:
            return None
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def load_tokenizer(path: str, option: str = "workload.tokenizer") -> Any:
    """A ``tokenizer.json`` (or a folder holding one); ``option`` names where the path was given, for the
    one-line error. Needs the ``tokenizer`` extra."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise SpecError(f"{option} needs the `tokenizers` package: pip install 'servewise[tokenizer]'") from None
    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    if not file.is_file():
        raise SpecError(f"{option}: no tokenizer.json at {path}")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the library raises a bare Exception on a bad file
        raise SpecError(f"{option}: cannot load {file}: {exc}") from None
