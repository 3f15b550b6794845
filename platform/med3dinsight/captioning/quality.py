"""Quality flags of generated captions: flagged, never dropped (the partial-OT loss tolerates noisy text)."""

from __future__ import annotations

import re

from med3dinsight.config.caption import QualityConfig

OK = "ok"
EMPTY = "empty"
DEGENERATE = "degenerate"
REPETITIVE = "repetitive"
FAILED = "failed"
"""The generation raised; the row's `error` column says why."""
FLAGS = (OK, EMPTY, DEGENERATE, REPETITIVE, FAILED)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def words(text: str) -> list[str]:
    """Lower-cased words of `text` (letters and digits; punctuation dropped)."""
    return [w.lower() for w in _WORD.findall(text)]


def repeated_ngram_fraction(tokens: list[str], n: int) -> float:
    """Fraction of the word n-grams of `tokens` that repeat an earlier n-gram (0 when there are none)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def longest_run(tokens: list[str]) -> int:
    """Length of the longest run of one word repeated back to back."""
    best = run = 0
    for i, token in enumerate(tokens):
        run = run + 1 if i and token == tokens[i - 1] else 1
        best = max(best, run)
    return best


def quality_flag(text: str | None, cfg: QualityConfig, error: str | None = None) -> str:
    """One of FLAGS for a caption.

    Order of the checks: failed (an error), empty (no visible characters), degenerate (fewer than
    `min_words` words or too few letters), repetitive (a word repeated more than `max_word_run` times in
    a row, or more than `max_repeated_ngram_fraction` of its `ngram`-grams repeated).
    """
    if error:
        return FAILED
    if text is None or not text.strip():
        return EMPTY
    tokens = words(text)
    visible = [c for c in text if not c.isspace()]
    alpha = sum(c.isalpha() for c in visible) / len(visible)
    if len(tokens) < cfg.min_words or alpha < cfg.min_alpha_ratio:
        return DEGENERATE
    if longest_run(tokens) > cfg.max_word_run:
        return REPETITIVE
    if repeated_ngram_fraction(tokens, cfg.ngram) > cfg.max_repeated_ngram_fraction:
        return REPETITIVE
    return OK
