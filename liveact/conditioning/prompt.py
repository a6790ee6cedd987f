"""Prompt normalisation, as Wan applies it before tokenising (its tokenizer's ``clean='whitespace'``).

Steps: ftfy's mojibake repair (only when the optional ``ftfy`` package is installed; it changes
nothing in clean text), HTML entities unescaped twice, every whitespace run collapsed to one space,
ends stripped. Both the umT5 encoder and the tiny text path use it, so one prompt means one thing.
"""

from __future__ import annotations

import html
import re

try:  # optional: Wan's first cleaning step; absent, only broken (mojibake) text is treated differently
    import ftfy as _ftfy
except ImportError:  # pragma: no cover - depends on the environment
    _ftfy = None

__all__ = ["clean_prompt"]

_WHITESPACE = re.compile(r"\s+")


def clean_prompt(text: str) -> str:
    if _ftfy is not None:
        text = _ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip()
