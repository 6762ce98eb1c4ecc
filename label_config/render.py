"""Builds the song labeling config XML. ``song_annotation.xml`` beside this file is its default output (a test keeps
them equal), so the shipped file and ``ls-acestep label-config`` never drift apart."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from . import names as n
from .vocabulary import KEYSCALES, LANGUAGE_NAMES, SECTION_LABELS, TIME_SIGNATURES, BPM_MIN, BPM_MAX

SHIPPED_CONFIG = Path(__file__).with_name("song_annotation.xml")

# Distinct, readable colours for the section labels (cycled when a custom label set is longer).
_COLOURS = (
    "#8dd3c7", "#4e79a7", "#f28e2b", "#e15759", "#b07aa1", "#76b7b2", "#59a14f",
    "#edc948", "#ff9da7", "#9c755f", "#bab0ac", "#d37295", "#cccccc",
)

_SONG_TEXT_SPEC = {
    # name: (heading, placeholder, rows)
    n.CAPTION: ("Caption (ACE-Step style: genre, mood, instruments, vocals, tempo feel)",
                "Melancholic indie folk with fingerpicked acoustic guitar, soft female vocals...", 3),
    n.LYRICS: ("Lyrics (section tags on their own line; leave empty to assemble from regions)",
               "[Verse]\n...\n\n[Chorus]\n...", 8),
    n.GENRE: ("Genres (one per line)", "indie folk", 2),
    n.INSTRUMENTS: ("Instruments (one per line)", "acoustic guitar", 3),
    n.EFFECTS: ("Effects (one per line)", "plate reverb on vocals", 2),
    n.VOCAL_CHARACTERISTICS: ("Vocal characteristics (one per line)", "breathy female alto", 2),
    n.MIX_NOTES: ("Mix notes (one per line)", "wide stereo pads, upfront vocal", 2),
}


def _textarea(name: str, per_region: bool = False) -> str:
    heading, placeholder, rows = _SONG_TEXT_SPEC.get(name, (name, "", 2))
    attrs = f'name="{name}" toName="{n.AUDIO}" editable="true" maxSubmissions="1" rows="{rows}"'
    if per_region:
        attrs += ' perRegion="true"'
    return (f"    <Header value={quoteattr(heading)}/>\n"
            f"    <TextArea {attrs} placeholder={quoteattr(placeholder)}/>")


def render_config(section_labels: tuple[str, ...] | list[str] = SECTION_LABELS, minimal: bool = False) -> str:
    """Return the labeling config XML.

    ``section_labels`` replaces the section label set; ``minimal`` leaves out the optional controls
    (``names.OPTIONAL_CONTROLS``)."""
    if not section_labels:
        raise ValueError("the section label set is empty")
    keep = (lambda name: name not in n.OPTIONAL_CONTROLS) if minimal else (lambda name: True)
    labels = "\n".join(
        f"    <Label value={quoteattr(label)} background=\"{_COLOURS[i % len(_COLOURS)]}\"/>"
        for i, label in enumerate(section_labels)
    )
    region_texts = []
    if keep(n.SEGMENT_NOTES):
        region_texts.append(
            f'    <Header value="What happens in the selected region"/>\n'
            f'    <TextArea name="{n.SEGMENT_NOTES}" toName="{n.AUDIO}" perRegion="true" editable="true" '
            f'maxSubmissions="1" rows="3" placeholder="instruments entering, dynamics, vocal delivery..."/>')
    if keep(n.SEGMENT_LYRICS):
        region_texts.append(
            f'    <Header value="Lyrics sung in the selected region"/>\n'
            f'    <TextArea name="{n.SEGMENT_LYRICS}" toName="{n.AUDIO}" perRegion="true" editable="true" '
            f'maxSubmissions="1" rows="3" placeholder="the words sung in this region"/>')
    song_texts = [_textarea(name) for name in n.SONG_TEXTS if keep(name)]
    keys = "\n".join(f"      <Choice value={quoteattr(k)}/>" for k in KEYSCALES)
    sigs = "\n".join(f"      <Choice value=\"{s}\"/>" for s in TIME_SIGNATURES)
    langs = "\n".join(
        f"      <Choice value=\"{code}\" hint={quoteattr(name)}/>" for code, name in LANGUAGE_NAMES.items()
    )
    nl = "\n"
    # The long lists are dropdowns (layout="select"). Never add showInline to them: Label Studio's editor lets
    # showInline override layout (1.23), which turns them back into rows of checkboxes.
    return f"""<View>
  <Header value="Song structure: drag on the waveform to add a section, then describe it"/>
  <Audio name="{n.AUDIO}" value="{n.AUDIO_VALUE}" zoom="true" hotkey="space" waveheight="120" height="160"/>
  <Labels name="{n.SECTION}" toName="{n.AUDIO}" choice="single">
{labels}
  </Labels>
  <View visibleWhen="region-selected">
{nl.join(region_texts)}
  </View>
  <View>
    <Header value="Song-level fields"/>
{nl.join(song_texts)}
    <Header value="Tempo (BPM, {BPM_MIN} to {BPM_MAX})"/>
    <Number name="{n.BPM}" toName="{n.AUDIO}" min="{BPM_MIN}" max="{BPM_MAX}" step="1"/>
    <Header value="Key"/>
    <Choices name="{n.KEYSCALE}" toName="{n.AUDIO}" choice="single" layout="select">
{keys}
    </Choices>
    <Header value="Time signature (beats per bar)"/>
    <Choices name="{n.TIMESIGNATURE}" toName="{n.AUDIO}" choice="single" showInline="true">
{sigs}
    </Choices>
    <Header value="Vocal language"/>
    <Choices name="{n.VOCAL_LANGUAGE}" toName="{n.AUDIO}" choice="single" layout="select">
{langs}
    </Choices>
  </View>
</View>
"""


def shipped_config() -> str:
    """The shipped XML file's text."""
    return SHIPPED_CONFIG.read_text(encoding="utf-8")
