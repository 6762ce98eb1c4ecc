"""Long songs through a 30 s transcriber: overlapping chunks, and their words stitched back into one list.

Whisper hears at most 30 s. A song is cut into chunks of CHUNK_SECONDS that overlap by OVERLAP_SECONDS, so a word
cut by one chunk's edge is heard whole by its neighbour. Stitching keeps, for each pair of neighbours, the words of
the first up to a seam in their overlap and the words of the second after it: where both chunks wrote the same
words in the overlap, the seam is a word they share (so nothing is doubled or lost even when their timestamps
differ by a few hundred ms); otherwise it is the middle of the overlap, by word midpoint. Pure functions.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ml_backend.lyrics.types import Word

CHUNK_SECONDS = 30.0  # Whisper's encoder sees exactly 30 s
# A word cut by a chunk edge must lie whole inside the neighbour: sung syllables are held for up to ~2 s, and
# Whisper's word times near an edge are the least reliable, so each side of the seam keeps 2.5 s of margin.
OVERLAP_SECONDS = 5.0


@dataclass(frozen=True)
class Chunk:
    """[start, end) of the song in seconds, sent to the transcriber as one piece."""

    start: float
    end: float


def plan_chunks(duration: float, chunk: float = CHUNK_SECONDS, overlap: float = OVERLAP_SECONDS) -> list[Chunk]:
    """Chunks covering [0, duration] seconds, each ``chunk`` long and starting ``chunk - overlap`` after the last;
    the last one ends at ``duration`` and starts ``chunk`` before it (so it overlaps its neighbour by at least
    ``overlap`` and is never a short scrap). A song no longer than ``chunk`` is one chunk."""
    if duration <= 0:
        return []
    chunks = []
    start = 0.0
    while start + chunk < duration:
        chunks.append(Chunk(start, start + chunk))
        start += chunk - overlap
    chunks.append(Chunk(max(0.0, duration - chunk), float(duration)))
    return chunks


def _key(text: str) -> str:
    """A word's text for matching: lower case, letters and digits only."""
    return re.sub(r"\W+", "", text.lower())


def _seam(left: list[Word], right: list[Word], lo: float, hi: float) -> tuple[int, int]:
    """Where to join ``left`` (the earlier chunk's words) and ``right``: (number of left words kept, index of the
    first right word kept). [lo, hi) is the overlap in song seconds."""
    middle = 0.5 * (lo + hi)
    left_in = [i for i, w in enumerate(left) if w.mid >= lo]
    right_in = [i for i, w in enumerate(right) if w.mid < hi]
    matcher = difflib.SequenceMatcher(a=[_key(left[i].text) for i in left_in],
                                      b=[_key(right[i].text) for i in right_in], autojunk=False)
    anchors = [(left_in[b.a + k], right_in[b.b + k]) for b in matcher.get_matching_blocks() for k in range(b.size)
               if _key(left[left_in[b.a + k]].text)]
    if anchors:
        # the shared word nearest the middle: the left chunk keeps it, the right chunk starts after it
        li, ri = min(anchors, key=lambda a: abs(0.5 * (left[a[0]].mid + right[a[1]].mid) - middle))
        return li + 1, ri + 1
    keep_left = sum(1 for w in left if w.mid < middle)
    first_right = next((i for i, w in enumerate(right) if w.mid >= middle), len(right))
    return keep_left, first_right


def stitch(chunks: list[Chunk], words: list[list[Word]]) -> list[Word]:
    """One word list (song seconds, time order) from each chunk's words (already in song seconds)."""
    if not chunks:
        return []
    result = list(words[0])
    for index in range(1, len(chunks)):
        lo, hi = chunks[index].start, chunks[index - 1].end
        right = list(words[index])
        if hi <= lo:  # chunks do not overlap: nothing to match
            result.extend(right)
            continue
        # only the previous chunk's words take part in the seam; earlier ones end before this overlap
        tail_from = next((i for i, w in enumerate(result) if w.mid >= lo), len(result))
        tail = result[tail_from:]
        keep, first = _seam(tail, right, lo, hi)
        result = result[:tail_from] + tail[:keep] + right[first:]
    return result
