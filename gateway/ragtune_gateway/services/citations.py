"""``[n]`` markers in a grounded answer as ``file_citation`` annotations (the Responses API): each
marker is taken out of the text, whole or as it streams, and an annotation of passage n's file is
put where it stood. An answer that cites nothing is annotated only with the files whose passages
hold most of what it says."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragtune_common.answer_support import support
from ragtune_gateway.schemas.responses import FileCitation

MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")  # [1], [1, 2], with the space before it
OPEN_MARKER = re.compile(r"\s*\[[\d,\s]*$")  # what may still become one, at the end of the text so far
TRAILING_SPACE = re.compile(r"\s+$")
MAX_HELD = 48  # characters held back at most while a marker may be coming
SUPPORT_MIN = 0.5  # an uncited answer's share of content words a passage must hold to be its source


@dataclass(frozen=True)
class Source:
    """The file a passage came from (None for a passage of a document that is not a file), and
    the passage's text."""

    file_id: str
    filename: str
    text: str = ""


@dataclass
class Citations:
    """Takes the ``[n]`` markers out of an answer as it comes (whole or in deltas) and records a
    ``file_citation`` of passage n's file at the position where each stood. Markers naming no
    passage given (``[2024]``) are ordinary text. An answer that cites no passage at all (small
    models often do not) gets, when it ends, an annotation at the end of its text for each file
    whose passage holds at least ``SUPPORT_MIN`` of its content words (stop words left out); none
    if no passage does: an answer is not credited to sources that do not say what it says."""

    sources: list[Source | None]
    annotations: list[FileCitation] = field(default_factory=list)
    text: str = ""  # the text given out so far, markers taken out
    pending: str = ""  # held back: the start of what may be a marker
    cited: bool = False  # whether the answer has cited a passage

    def feed(self, delta: str) -> tuple[str, list[FileCitation]]:
        """The text that can be given out now, and the annotations it made."""
        self.pending += delta
        out: list[str] = []
        new: list[FileCitation] = []
        pos = 0
        for match in MARKER.finditer(self.pending):
            numbers = [int(n) for n in match.group(1).split(",")]
            if not all(1 <= n <= len(self.sources) for n in numbers):
                continue
            out.append(self.pending[pos : match.start()])
            self.cited = True
            index = len(self.text) + sum(map(len, out))
            new.extend(self._annotate([self.sources[n - 1] for n in numbers], index))
            pos = match.end()
        rest = self.pending[pos:]
        held = OPEN_MARKER.search(rest) or TRAILING_SPACE.search(rest)
        cut = held.start() if held is not None and len(rest) - held.start() <= MAX_HELD else len(rest)
        out.append(rest[:cut])
        self.pending = rest[cut:]
        given = "".join(out)
        self.text += given
        return given, new

    def finish(self) -> tuple[str, list[FileCitation]]:
        """What was still held back (an unfinished marker is text), and the annotations of an
        answer that cited nothing: the files of the passages that support it."""
        rest, self.pending = self.pending, ""
        self.text += rest
        if self.cited:
            return rest, []
        supporting = [s for s in self.sources if s is not None and support(self.text, [s.text]) >= SUPPORT_MIN]
        return rest, self._annotate(supporting, len(self.text))

    def _annotate(self, sources: Sequence[Source | None], index: int) -> list[FileCitation]:
        new = []
        for source in sources:
            if source is None:
                continue
            annotation = FileCitation(file_id=source.file_id, filename=source.filename, index=index)
            if annotation not in self.annotations:
                self.annotations.append(annotation)
                new.append(annotation)
        return new


def cite(text: str, sources: list[Source | None]) -> tuple[str, list[FileCitation]]:
    """A whole answer without its markers, and its annotations."""
    citations = Citations(sources)
    citations.feed(text)
    citations.finish()
    return citations.text, citations.annotations
