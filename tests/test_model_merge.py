"""Window descriptions merged back into regions and song fields (ml_backend.merge), with the engines' real
WindowDescription and the analysis' real MusicAnalysis/Section."""

from __future__ import annotations

from ml_backend.engines.base import WindowDescription
from ml_backend.merge import (
    RegionPlan, build_song, majority_language, region_label, region_notes, song_score, window_ok_rate,
)

LABELS = ("Intro", "Verse", "Chorus", "Outro")


def described(**fields) -> WindowDescription:
    return WindowDescription(**fields)


def failed() -> WindowDescription:
    return WindowDescription.failed("out of memory (lower BATCH_SIZE or MAX_NEW_TOKENS)")


def test_split_region_texts_join_in_order_and_failures_drop_out():
    parts = [
        described(summary="Soft piano opens.", notable_moments=[(31.4, "strings enter.")]),
        failed(),
        described(summary="Drums join and build.", notable_moments=[(65.0, "a snare fill")]),
    ]
    text = region_notes(parts)
    assert text.splitlines() == ["Soft piano opens. Drums join and build.", "At 0:31: strings enter.",
                                 "At 1:05: a snare fill."]
    assert region_notes([failed(), failed()]) == ""


def test_region_label_is_the_majority_mapped_onto_the_label_set():
    parts = [described(section_label="chorus"), described(section_label="Verse"),
             described(section_label="Refrain"), failed()]
    assert region_label(parts, LABELS) == "Chorus"
    assert region_label([described(section_label="Drop")], LABELS) == ""  # not in this config's set
    assert region_label([failed()], LABELS) == ""


def test_language_majority_prefers_a_known_language():
    assert majority_language([described(vocal_language="en"), described(vocal_language="unknown"),
                              described(vocal_language="unknown"), described(vocal_language="es"),
                              described(vocal_language="en")]) == "en"
    assert majority_language([described(vocal_language="unknown")]) == "unknown"
    assert majority_language([described(), failed()]) == ""


def test_ok_rate():
    assert window_ok_rate([described(), failed(), described(), described()]) == 0.75
    assert window_ok_rate([]) == 1.0
