"""Radiology report sectioning and cleaning (MIMIC-CXR reports, MGCA rules).

MIMIC-CXR free-text reports carry upper-case section headers followed by a colon
(``FINDINGS:``, ``IMPRESSION:``, ``INDICATION:`` ...) plus a ``FINAL REPORT`` banner.
MGCA (docs/methods/mgca.md) trains on ``impression + findings``, split on numbered lists and
full stops, lower-cased, word characters only, dropping sentences of <= 1 token and
reports of < 3 tokens. When a report has neither section, MIMIC-CXR's own section
parser falls back to the last paragraph; we do the same, but never take that paragraph
from an administrative section (indication, comparison, ...), which says nothing about
the image.

Report files are read with :func:`read_report`: UTF-8 (MIMIC-CXR's own files are ASCII),
UTF-16 / UTF-32 with a byte-order mark, UTF-16 without one (detected by its zero bytes),
and otherwise Windows-1252 / Latin-1, which every byte sequence decodes as, so an
exported "naïve" report keeps its words instead of gaining replacement characters. A
file that is none of these (binary, such as an image saved under the report's name) is a
:class:`ReportReadError` naming the file. Length is not limited here: the text encoder
truncates each report to its ``max_length`` pieces.
"""
from __future__ import annotations

import codecs
import os
import re
from typing import TypedDict

__all__ = ["ReportSections", "section_report", "report_text", "clean_report",
           "MIN_REPORT_TOKENS", "read_report", "ReportReadError"]

# A header starts a line: upper-case words (with a few punctuation marks found in real
# reports, e.g. "RECOMMENDATION(S):"), then a colon. Requiring >= 2 letters avoids
# taking a "A:"-like fragment for a header.
_HEADER = re.compile(r"^[ \t]*(?P<name>[A-Z][A-Z ()/&'-]*[A-Z)])[ \t]*:", re.MULTILINE)
# A banner line without colon; it opens the report and never holds findings.
_BANNER = re.compile(r"^[ \t]*FINAL REPORT[ \t]*$", re.MULTILINE)

_FINDINGS = {"FINDINGS", "FINDING"}
_IMPRESSION = {"IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS"}
# Sections that describe the request or the workflow, not the image: a last-paragraph
# fallback taken from them would teach the model the clinical question as if it were
# the answer.
_ADMINISTRATIVE = {
    "EXAMINATION", "EXAM", "INDICATION", "INDICATIONS", "HISTORY", "CLINICAL HISTORY",
    "REASON FOR EXAM", "REASON FOR EXAMINATION", "COMPARISON", "COMPARISONS",
    "TECHNIQUE", "PROCEDURE", "NOTIFICATION", "RECOMMENDATION", "RECOMMENDATIONS",
    "RECOMMENDATION(S)", "WET READ", "ADDENDUM", "CLINICAL INFORMATION",
}

MIN_REPORT_TOKENS = 3  # MGCA: reports with fewer tokens are rejected

# Numbered-list markers ("1.", "2.") at a line start or after white space, not the
# "1." of a decimal such as "1.5 cm".
_NUMBERED = re.compile(r"(?:^|(?<=\s))\d+\.(?!\d)")
# Full stops that end a sentence (not decimal points).
_FULL_STOP = re.compile(r"\.(?!\d)")
_WORD = re.compile(r"\w+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


class ReportSections(TypedDict):
    """Sections of one report; empty strings for what the report lacks."""

    findings: str
    impression: str
    last_paragraph: str


class ReportReadError(ValueError):
    """A report file that is not text in any encoding :func:`read_report` knows."""


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def _undecodable(path: os.PathLike | str, why: str) -> ReportReadError:
    return ReportReadError(f"{path}: not a text report ({why}); expected UTF-8, UTF-16 or "
                           "Latin-1 text")


def read_report(path: os.PathLike | str) -> str:
    """The text of report file `path`, whatever its encoding (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ReportReadError: binary content (NUL bytes that are not UTF-16, control bytes).
    """
    data = open(path, "rb").read()
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as error:
                raise _undecodable(path, f"{encoding} byte-order mark, then {error.reason} "
                                   f"at byte {error.start}") from None
    if b"\x00" in data:
        # UTF-16 without a BOM: ASCII text puts a zero in every other byte.
        even, odd = data[0::2].count(0), data[1::2].count(0)
        if len(data) % 2 == 0 and max(even, odd) > 0.3 * len(data) / 2 > 0 and min(even, odd) == 0:
            try:
                return data.decode("utf-16-be" if even > odd else "utf-16-le")
            except UnicodeDecodeError:
                pass
        raise _undecodable(path, f"{data.count(0)} NUL bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
        if "\ufffd" in text:  # bytes cp1252 leaves undefined: Latin-1 takes every byte
            text = data.decode("latin-1")
    control = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    if control > max(2, len(text) // 100):
        raise _undecodable(path, f"{control} control characters")
    return text


def _normalise_space(text: str) -> str:
    return " ".join(text.split())


def _split_sections(text: str) -> list[tuple[str | None, str]]:
    """(header or None, body) pieces in report order; None is text before any header."""
    text = _BANNER.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    pieces: list[tuple[str | None, str]] = []
    last_end, last_name = 0, None
    for match in _HEADER.finditer(text):
        pieces.append((last_name, text[last_end:match.start()]))
        last_name = _normalise_space(match.group("name"))
        last_end = match.end()
    pieces.append((last_name, text[last_end:]))
    return pieces


def section_report(text: str) -> ReportSections:
    """Split a MIMIC-CXR report into findings, impression and its last paragraph.

    Repeated sections (an addendum repeating ``IMPRESSION:``) are joined in order.
    ``last_paragraph`` is the last non-empty paragraph outside administrative
    sections (see module docstring); it is what :func:`report_text` falls back to.
    """
    findings: list[str] = []
    impression: list[str] = []
    paragraphs: list[str] = []
    for name, body in _split_sections(text or ""):
        if name in _FINDINGS:
            findings.append(_normalise_space(body))
        elif name in _IMPRESSION:
            impression.append(_normalise_space(body))
        if name not in _ADMINISTRATIVE:
            paragraphs += [p for p in map(_normalise_space, _PARAGRAPH_BREAK.split(body)) if p]
    return ReportSections(
        findings=" ".join(f for f in findings if f),
        impression=" ".join(i for i in impression if i),
        last_paragraph=paragraphs[-1] if paragraphs else "",
    )


def report_text(text: str) -> str:
    """MGCA's report text: impression then findings, else the last paragraph."""
    sections = section_report(text)
    joined = " ".join(s for s in (sections["impression"], sections["findings"]) if s)
    return joined or sections["last_paragraph"]


def _tokens(sentence: str) -> list[str]:
    # Pure-underscore tokens are MIMIC's de-identification placeholders ("___"): they
    # are word characters but carry no content, so they do not count as tokens.
    return [t for t in _WORD.findall(sentence.lower()) if t.strip("_")]


def clean_report(text: str) -> list[str]:
    """Cleaned sentences of a raw report, following MGCA's rules.

    ``text`` is the raw report file content; sectioning (:func:`report_text`) comes first.
    Returns lower-case sentences of ``\\w+`` tokens joined by single spaces; sentences of
    <= 1 token are dropped; a report with < ``MIN_REPORT_TOKENS`` tokens in total gives
    ``[]`` (rejected).
    """
    body = report_text(text)
    sentences: list[str] = []
    for item in _NUMBERED.split(body):
        for piece in _FULL_STOP.split(item):
            tokens = _tokens(piece)
            if len(tokens) > 1:
                sentences.append(" ".join(tokens))
    if sum(len(s.split()) for s in sentences) < MIN_REPORT_TOKENS:
        return []
    return sentences
