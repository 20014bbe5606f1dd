"""Cleaning song lyrics (as scraped from Genius) into language-model text.

Scraped lyrics carry things nobody sings: section labels (`[Chorus]`, `[Verse 1: Nicki Minaj]`,
`(Repeat chorus x2)`, `CHORUS:`, `VERSE 1` glued to the first line), Genius annotations (`[x2]`,
`[?]`) and line breaks that the scrape lost (`...went home to herAndy Wolloe said hello`, about
13,800 in the Billboard table, in 47% of the songs). `clean_lyrics` takes the labels out and puts
the lost line breaks back, and keeps one lyric line per text line, separated by `\\n`.

Why `\\n` is kept: fastai's tokenizer (spaCy) turns each `\\n` into a token of its own, so a
language model sees where lines end, as a sentence end in prose, and generated lyrics come out in
lines. See `docs/lyrics.md` for what was measured.
"""
from __future__ import annotations

import re

__all__ = ["clean_lyrics", "is_section_label"]

# Words that name a part of a song, or say how to perform it, in Genius/lyrics-site labels.
_LABEL_WORDS = {"verse", "chorus", "prechorus", "pre-chorus", "post-chorus", "postchorus", "bridge", "intro", "outro",
                "hook", "pre-hook", "post-hook", "refrain", "interlude", "instrumental", "repeat", "repeats", "solo",
                "breakdown", "spoken", "fade", "fades", "ad-lib", "ad-libs", "adlib", "adlibs", "break", "vamp", "coda"}
# Words that may stand beside them in a label ("Repeat chorus twice and fade out", "Chorus, Lead").
_FILLER_WORDS = {"and", "then", "out", "till", "til", "until", "to", "twice", "once", "more", "first", "last", "line",
                 "lines", "half", "of", "the", "with", "lead", "ad", "libs", "lib", "x", "times", "all", "guitar",
                 "piano", "sax", "saxophone", "music", "end", "ending", "1st", "2nd", "3rd", "4th", "i", "ii", "iii",
                 "iv", "v", "on"}
_COUNT = re.compile(r"^(\d+x?|x\d+)$")           # "2", "2x", "x3"
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

# `[...]` is Genius's annotation syntax: section headers (`[Chorus: Drake]`), repeats (`[x2]`),
# unclear words (`[?]`). Sung backing vocals are written in parentheses, which stay.
_BRACKETS = re.compile(r"\[[^\]\n]*[\]}]")
# A bracket left open over several sung lines ("[She loves you, yeah ... yeah]"): only its marks go.
_STRAY = re.compile(r"[\[\]{}]")
_PARENS = re.compile(r"\(([^()\n]*)\)")
# A label in capitals glued to the first sung line: "VERSE 1That fateful night", "CHORUS:Don't".
_CAPS_LABEL = re.compile(r"^(?:VERSE|CHORUS|PRE-CHORUS|BRIDGE|HOOK|INTRO|OUTRO|REFRAIN|SPOKEN)\s*(?:\d+|[IVX]+)?\s*"
                         r"(?:\(\d+x?\)|\(x\d+\))?\s*(?::\s*|(?=[A-Z][a-z'])|$)")
# A label followed by a colon, in any case: "Chorus: ...", "(Spoken:) ...", "Verse 2: ...".
_COLON_LABEL = re.compile(r"^\(?\s*(?:verse|chorus|pre-chorus|bridge|hook|intro|outro|refrain|spoken|repeat chorus)"
                          r"\s*(?:\d+|[ivx]+)?\s*\)?\s*:\s*\)?\s*", re.I)
# A repeat count: "(x2)", "(2x)", "x 3", "(8X)"; inside a line or a line of its own.
_REPEAT = re.compile(r"\(\s*(?:x\s*\d+|\d+\s*x)\s*\)|(?<![\w-])(?:x\s?\d+|\d+x)(?![\w-])", re.I)
# A speaker tag on a line of its own: "Both:", "MELLE MEL:", "(Reporter):" (capitalised words only,
# so that sung lines such as "He said:" or "I say:" stay).
_SPEAKER = re.compile(r"^\(?(?:[A-Z][\w.'&-]*\s?){1,3}\)?:$")
# Invisible characters the scrape left (zero-width space, byte-order mark).
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# A line break lost in scraping: a lowercase letter (with optional closing punctuation and quote)
# then a capital that starts a word: "herAndy", "manWell", "doing, Wo?\"Said".
_GLUED = re.compile(r"(?<=[a-z])([.,!?;]?[\"')]?)(?=[A-Z])")
# Word beginnings that legitimately hold a capital inside a name: McCartney, MacArthur, DeBarge,
# LaToya, DiMaggio, LeShaun, DuBois, VanHalen; a single lowercase letter is a brand (iPod, eBay).
_NAME_PREFIX = re.compile(r"^(?:Mc|Mac|De|Di|Da|La|Le|Du|Van|Von|O|[a-z])$")


def is_section_label(text: str) -> bool:
    """True if `text` (a line or a parenthesised group) only names a part of a song or how to
    perform it: "Chorus", "Repeat chorus x2 and fade", "Verse 1:", "Chorus, Lead"."""
    words = _WORD.findall(text.casefold())
    return (bool(words) and any(w in _LABEL_WORDS for w in words)
            and all(w in _LABEL_WORDS or w in _FILLER_WORDS or _COUNT.match(w) for w in words))


def _unglue(line: str) -> str:
    "Put back the line breaks the scrape lost inside `line`, sparing names like McCartney and iPod."
    out, start = [], 0
    for m in _GLUED.finditer(line):
        word_start = max(line.rfind(" ", 0, m.start()), line.rfind("\n", 0, m.start())) + 1
        left, right = line[word_start:m.start()], line[m.end():]
        if not m.group(1) and (_NAME_PREFIX.match(left) or right.startswith(left)):   # JoJo, BeBe: keep
            continue
        out.append(line[start:m.end()])
        start = m.end()
    out.append(line[start:])
    return "\n".join(out)


def _clean_line(line: str) -> str:
    line = _STRAY.sub("", _BRACKETS.sub(" ", line))
    line = _PARENS.sub(lambda m: " " if is_section_label(m.group(1)) else m.group(0), line)
    line = _CAPS_LABEL.sub("", line.strip())
    line = _COLON_LABEL.sub("", line)
    line = re.sub(r"\s+", " ", _REPEAT.sub(" ", line)).strip()
    if is_section_label(line) or _SPEAKER.match(line) or not re.search(r"\w", line):
        return ""                                 # a label, a speaker tag, or punctuation alone ("...", ")")
    return line


def clean_lyrics(text: str, line_breaks: bool = True) -> str:
    """Lyrics as language-model text: section labels, speaker tags, repeat counts ("(x2)") and
    Genius annotations removed, line breaks the scrape lost restored, blank lines and lines of
    punctuation alone dropped, one lyric line per `\\n`-separated line (or, with
    `line_breaks=False`, all lines joined by single spaces)."""
    if not isinstance(text, str):
        raise TypeError(f"lyrics must be a string, not {type(text).__name__}")
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _BRACKETS.sub("\n", text)              # a header on its own or glued to a line: a line break
    lines = []
    for raw in text.split("\n"):
        for line in _unglue(raw.strip()).split("\n"):
            line = _clean_line(line)
            if line:
                lines.append(line)
    return ("\n" if line_breaks else " ").join(lines)
