"""The shipped labeling config, its names and the vocabulary normalisers."""

import pytest
from click.testing import CliRunner
from label_studio_sdk.label_interface import LabelInterface

from label_config import names as n
from label_config import render_config, shipped_config
from label_config.vocabulary import (
    KEYSCALES, LANGUAGES, SECTION_LABELS, normalize_bpm, normalize_keyscale, normalize_language,
    normalize_section_label, normalize_timesignature,
)
from ls_acestep.cli import main


def _controls(xml):
    li = LabelInterface(xml)
    return li, {c.name: c for c in li.controls}


def test_shipped_file_is_the_rendered_default():
    assert shipped_config() == render_config()


@pytest.mark.parametrize("minimal", [False, True])
def test_long_choice_lists_are_dropdowns(minimal):
    """The 24 keys and the languages are one dropdown each, not rows of checkboxes. Label Studio's editor (1.23)
    lets showInline override layout, so the two must not carry it; the four time signatures stay inline."""
    import xml.etree.ElementTree as ET

    choices = {c.get("name"): c.attrib for c in ET.fromstring(render_config(minimal=minimal)).iter("Choices")}
    for name in (n.KEYSCALE, n.VOCAL_LANGUAGE):
        assert choices[name].get("layout") == "select" and "showInline" not in choices[name], choices[name]
    assert choices[n.TIMESIGNATURE].get("showInline") == "true" and "layout" not in choices[n.TIMESIGNATURE]


def test_shipped_config_has_every_contract_name():
    li, controls = _controls(shipped_config())
    assert [o.name for o in li.objects] == [n.AUDIO]
    assert li.get_object(n.AUDIO).tag == "Audio"
    expected = {n.SECTION: "Labels", n.SEGMENT_NOTES: "TextArea", n.SEGMENT_LYRICS: "TextArea",
                n.BPM: "Number", n.KEYSCALE: "Choices", n.TIMESIGNATURE: "Choices", n.VOCAL_LANGUAGE: "Choices"}
    expected.update({name: "TextArea" for name in n.SONG_TEXTS})
    assert {name: c.tag for name, c in controls.items()} == expected
    assert all(c.to_name == [n.AUDIO] for c in controls.values())
    assert list(controls[n.SECTION].labels) == list(SECTION_LABELS)
    assert list(controls[n.KEYSCALE].labels) == list(KEYSCALES)
    assert list(controls[n.TIMESIGNATURE].labels) == ["2", "3", "4", "6"]
    assert list(controls[n.VOCAL_LANGUAGE].labels)[:3] == ["instrumental", "unknown", "en"]
    for name in n.PER_REGION_TEXTS:
        assert controls[name].attr.get("perRegion") == "true"
    for name in n.SONG_TEXTS:
        assert controls[name].attr.get("perRegion") is None
    assert controls[n.BPM].attr["min"] == "30" and controls[n.BPM].attr["max"] == "300"
    audio = shipped_config().split("<Audio ", 1)[1].split("/>", 1)[0]
    assert 'zoom="true"' in audio and 'waveheight="120"' in audio


def test_keyscales_are_24_in_acestep_spelling():
    assert len(KEYSCALES) == 24 and len(set(KEYSCALES)) == 24
    for key in KEYSCALES:
        note, mode = key.split(" ")
        assert mode in ("major", "minor") and note[0] in "ABCDEFG" and note[1:] in ("", "#", "b")
    assert {"C major", "F# minor", "Bb major", "D minor", "F# major"} <= set(KEYSCALES)


def test_cli_prints_config_and_options_change_it():
    runner = CliRunner()
    full = runner.invoke(main, ["label-config"])
    assert full.exit_code == 0 and full.output == shipped_config()
    custom = runner.invoke(main, ["label-config", "--sections", "Verse, Chorus,Verse", "--minimal"])
    assert custom.exit_code == 0
    _, controls = _controls(custom.output)
    assert list(controls[n.SECTION].labels) == ["Verse", "Chorus"]
    assert not set(n.OPTIONAL_CONTROLS) & set(controls)
    assert {n.CAPTION, n.BPM, n.KEYSCALE, n.SEGMENT_NOTES} <= set(controls)
    bad = runner.invoke(main, ["label-config", "--sections", " , "])
    assert bad.exit_code == 2 and "at least one label" in bad.output


@pytest.mark.parametrize("raw,expected", [
    ("Am", "A minor"), ("A min", "A minor"), ("a minor", "A minor"), ("Bbm", "Bb minor"),
    ("F#", "F# major"), ("C# major", "Db major"), ("AM", "A major"), ("d minor", "D minor"),
    ("Ebmaj", "Eb major"), ("G♯ minor", "G# minor"), ("A# minor", "Bb minor"), ("H minor", None),
    ("", None), (None, None), ("unknown", None),
])
def test_normalize_keyscale(raw, expected):
    assert normalize_keyscale(raw) == expected
    if expected:
        assert expected in KEYSCALES


@pytest.mark.parametrize("raw,expected", [
    ("4/4", "4"), ("3/4", "3"), ("6/8", "6"), ("2", "2"), (4, "4"), ("5/4", None), ("x", None), (None, None),
])
def test_normalize_timesignature(raw, expected):
    assert normalize_timesignature(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    (120, 120), (119.6, 120), ("96 bpm", 96), (29, None), (301, None), ("fast", None), (True, None),
    (float("nan"), None), (float("inf"), None), (float("-inf"), None), ("9" * 400, None), (10 ** 400, None),
])
def test_normalize_bpm(raw, expected):
    assert normalize_bpm(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("English", "en"), ("en", "en"), ("EN-us", "en"), ("Mandarin", "zh"), ("instrumental", "instrumental"),
    ("Japanese", "ja"), ("Klingon", None), (3, None),
])
def test_normalize_language(raw, expected):
    assert normalize_language(raw) == expected
    if expected:
        assert expected in LANGUAGES


@pytest.mark.parametrize("raw,expected", [
    ("verse 2", "Verse"), ("[Chorus - anthemic]", "Chorus"), ("prechorus", "Pre-Chorus"),
    ("Pre-Chorus 2", "Pre-Chorus"), ("guitar solo", "Solo"), ("refrain", "Chorus"), ("blah", None),
])
def test_normalize_section_label(raw, expected):
    assert normalize_section_label(raw) == expected


def test_section_label_respects_a_custom_set():
    assert normalize_section_label("chorus", ["Verse", "Chorus"]) == "Chorus"
    assert normalize_section_label("bridge", ["Verse", "Chorus"]) is None
