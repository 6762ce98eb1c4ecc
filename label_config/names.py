"""Control names of the shipped labeling config: the contract between the config, the backend and the converter.

Other tools rely on these names; change them only with a migration note in docs/label-config.md.
"""

AUDIO = "audio"  # <Audio name="audio" value="$audio">
AUDIO_VALUE = "$audio"

SECTION = "section"  # <Labels> on the audio timeline
SEGMENT_NOTES = "segment_notes"  # per-region <TextArea>: what happens in the region
SEGMENT_LYRICS = "segment_lyrics"  # per-region <TextArea>: the words sung in the region

CAPTION = "caption"
LYRICS = "lyrics"
GENRE = "genre"
INSTRUMENTS = "instruments"
EFFECTS = "effects"
VOCAL_CHARACTERISTICS = "vocal_characteristics"
MIX_NOTES = "mix_notes"
BPM = "bpm"
KEYSCALE = "keyscale"
TIMESIGNATURE = "timesignature"
VOCAL_LANGUAGE = "vocal_language"

PER_REGION_TEXTS = (SEGMENT_NOTES, SEGMENT_LYRICS)

# Song-level free text; the list-like ones hold one entry per item (one line in the TextArea each).
SONG_TEXTS = (CAPTION, LYRICS, GENRE, INSTRUMENTS, EFFECTS, VOCAL_CHARACTERISTICS, MIX_NOTES)
SONG_CHOICES = (KEYSCALE, TIMESIGNATURE, VOCAL_LANGUAGE)

# Controls `ls-acestep label-config --minimal` leaves out.
OPTIONAL_CONTROLS = (SEGMENT_LYRICS, LYRICS, EFFECTS, VOCAL_CHARACTERISTICS, MIX_NOTES)
