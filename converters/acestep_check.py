"""The reader's truth for ``ls-acestep validate``: per song, what each ACE-Step 1.5 release will hold (read with
the rules in acestep_readers.py) against what its sidecar means, and the checks that explain a difference.

A difference in a field the release can read from some file is a problem (the folder can be fixed); a field the
release has no file for (the early release reads no JSON: time signature, language) is a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from label_config.vocabulary import normalize_keyscale, normalize_timesignature

from .acestep_readers import (
    ACESTEP_KEYSCALES, ACESTEP_LANGUAGES, ACESTEP_TIME_SIGNATURES, CURRENT, DURATION_MAX, DURATION_MIN, EARLY,
    FIELDS, INSTRUMENTAL, MAX_DATASET_CHARS, MAX_TRAIN_SECONDS, RELEASES, Held, Release, _text, audio_files,
    audio_seconds, differences, has_words, intended, load_csv_metadata, read_sample, read_text, stem_path, summary,
    TooLargeError, vocal_status,
)

IGNORED_KEYS = ("genre", "is_instrumental", "vocal_language")  # sidecar keys no folder scan reads


@dataclass
class SongView:
    """One song: what each release holds, and the differences from its sidecar per release."""

    audio: Path
    sidecar: dict | None  # None: no readable <stem>.json
    held: dict[str, Held] = field(default_factory=dict)  # release name -> Held
    differs: dict[str, list] = field(default_factory=dict)  # release name -> [(field, held, meant)]

    def as_json(self, root: Path) -> dict:
        return {"audio": _shown(self.audio, root), "sidecar": self.sidecar is not None,
                "holds": {r: _plain(h.values()) for r, h in self.held.items()},
                "differs": {r: [{"field": f, "holds": _plain(h), "sidecar": _plain(m)} for f, h, m in d]
                            for r, d in self.differs.items()}}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, type(None), list)) else repr(value)


def _shown(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _sidecar(audio: Path) -> dict | None:
    path = Path(stem_path(audio) + ".json")
    try:
        data = json.loads(read_text(path))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def song_views(folder: Path, releases: tuple[Release, ...] = (CURRENT, EARLY),
               measure=audio_seconds) -> tuple[list[SongView], list[str]]:
    """Every song of ``folder`` as each release reads it, compared with its sidecar; plus the CSV warnings."""
    folder = Path(folder)
    csv_by_release = {r.name: load_csv_metadata(folder, r) for r in releases}
    warnings = sorted({w for _, ws in csv_by_release.values() for w in ws})
    views = []
    for audio in audio_files(folder):
        seconds = measure(audio)
        view = SongView(audio, _sidecar(audio))
        for release in releases:
            held = read_sample(audio, release, csv_by_release[release.name][0], seconds)
            view.held[release.name] = held
            if view.sidecar is not None:
                view.differs[release.name] = differences(held, intended(view.sidecar))
        views.append(view)
    return views, warnings


def holds_lines(view: SongView) -> list[str]:
    """What each release holds for the song: the first release in full, the others only where they differ."""
    lines, first = [], None
    for name, held in view.held.items():
        values = held.values()
        if first is None:
            first = values
            lines.append(f"holds ({name} release): {summary(values)}")
            continue
        changed = tuple(f for f in FIELDS if values[f] != first[f])
        lines.append(f"holds ({name} release): " + (summary(values, changed) if changed else "the same"))
    return lines


def view_findings(view: SongView) -> list[tuple[Path, str, str]]:
    """(path, level, message) for one song: its differences from the sidecar, release by release, and the checks
    of its files that ACE-Step misreads or ignores."""
    out: list[tuple[Path, str, str]] = []
    sidecar_path = Path(stem_path(view.audio) + ".json")
    for name, diffs in view.differs.items():
        release = RELEASES[name]
        fixable = [d for d in diffs if d[0] in release.readable]
        unreadable = [d for d in diffs if d[0] not in release.readable]
        if fixable:
            out.append((view.audio, "problem", f"the {name} release holds " + "; ".join(
                f"{f} {_brief(h)} where the sidecar means {_brief(m)}" for f, h, m in fixable)))
        if unreadable:
            out.append((view.audio, "note", f"the {name} release reads no "
                        + ", ".join(f for f, _, _ in unreadable) + " from a folder: it trains without "
                        + ", ".join(f"{f} {_brief(m)}" for f, _, m in unreadable)))
    seconds = next(iter(view.held.values())).duration if view.held else 0
    out.extend((view.audio, level, message) for level, message in duration_checks(seconds))
    if view.sidecar is not None:
        out.extend((sidecar_path, level, message) for level, message in sidecar_checks(view.sidecar))
    out.extend(lyrics_checks(view.audio, view.sidecar or {}))
    return out


def _brief(value) -> str:
    if isinstance(value, str):
        line = value.strip().splitlines()[0] if value.strip() else ""
        return repr(line[:50] + ("…" if len(line) > 50 or "\n" in value.strip() else ""))
    return repr(value)


def duration_checks(seconds: int) -> list[tuple[str, str]]:
    """ACE-Step measures whole seconds: 0 means it could not read the audio."""
    if seconds <= 0:
        return [("problem", "ACE-Step cannot measure this audio (duration 0 s): check the file")]
    if seconds < DURATION_MIN or seconds > DURATION_MAX:
        return [("problem", f"duration {seconds} s is outside the {DURATION_MIN}-{DURATION_MAX} s ACE-Step accepts")]
    if seconds > MAX_TRAIN_SECONDS:
        return [("note", f"duration {seconds} s: preprocessing cuts it at {MAX_TRAIN_SECONDS} s (the rest and its "
                         "lyrics are not trained)")]
    return []


def sidecar_checks(sidecar: dict) -> list[tuple[str, str]]:
    """Values outside ACE-Step's vocabulary, other tools' spellings, and keys no folder scan reads."""
    out: list[tuple[str, str]] = []
    key = sidecar.get("keyscale")
    if key and not (isinstance(key, str) and key in ACESTEP_KEYSCALES):
        hint = normalize_keyscale(key) if isinstance(key, str) else None
        out.append(("problem", f"keyscale {key!r} is misread: not one of ACE-Step's 70 spellings (note, optional "
                               "#/b/♯/♭, a space, major/minor)" + (f"; {hint!r} is meant?" if hint else "")))
    sig = sidecar.get("timesignature")
    if sig and str(sig) not in ACESTEP_TIME_SIGNATURES:
        hint = normalize_timesignature(sig)
        out.append(("problem", f"timesignature {sig!r}: ACE-Step takes the numerator only, one of "
                               f"{', '.join(ACESTEP_TIME_SIGNATURES)}" + (f" (write {hint!r})" if hint else "")))
    language = sidecar.get("language")
    if language == "instrumental":
        out.append(("note", "language 'instrumental' is not in ACE-Step's language list: its lyric prompt says "
                            "'instrumental'; leave the key out (it then holds 'unknown', as its own labels do)"))
    elif isinstance(language, str) and len(language) <= 3 and language not in ACESTEP_LANGUAGES:
        out.append(("problem", f"language {language!r} is not in ACE-Step's language list"))
    if sidecar.get("genre") or (isinstance(sidecar.get("music_analysis"), dict)
                                and sidecar["music_analysis"].get("genres")):
        out.append(("note", "genre is set but a folder scan never reads it: a sample picked for genre training "
                            "(genre_ratio > 0) gets an empty prompt; only the dataset JSON carries genre"))
    # Our own sidecars carry these keys for our tools and the captioning pipeline by design (docs/acestep.md);
    # another tool's sidecar may rely on them.
    ignored = [k for k in IGNORED_KEYS[1:] if k in sidecar]
    if ignored and not isinstance(sidecar.get("provenance"), dict):
        out.append(("note", f"{', '.join(ignored)}: not read by ACE-Step's folder scan (the lyrics file and "
                            "'language' decide what it holds)"))
    if vocal_status(sidecar) is None:
        out.append(("note", "vocals unknown (no lyrics, no language): ACE-Step trains it as [Instrumental]"))
    return out


def lyrics_checks(audio: Path, sidecar: dict) -> list[tuple[Path, str, str]]:
    """The lyrics files against what the sidecar says about vocals."""
    base = stem_path(audio)
    txt, lyrics_txt = Path(base + ".txt"), Path(base + ".lyrics.txt")
    out: list[tuple[Path, str, str]] = []
    new_text, old_text = _text(lyrics_txt), _text(txt)
    if lyrics_txt.is_file() and txt.is_file():
        if new_text and old_text and new_text != old_text:
            out.append((lyrics_txt, "problem", f"both {lyrics_txt.name} and {txt.name} hold lyrics, and they "
                        f"differ: the current release reads {lyrics_txt.name}, the early one {txt.name}"))
        else:
            out.append((lyrics_txt, "note", f"both {lyrics_txt.name} and {txt.name} are present"))
    words = new_text or old_text
    found = lyrics_txt if new_text else txt
    status = vocal_status(sidecar) if sidecar else None
    if words == INSTRUMENTAL:
        out.append((found, "problem", f"{found.name} holds only [Instrumental]: any lyrics file makes ACE-Step's "
                    "folder scan call the song vocal; delete it (ACE-Step supplies [Instrumental] itself)"))
    elif words and status is True:
        out.append((found, "problem", f"{found.name} holds lyrics but the sidecar says instrumental"))
    elif not words and status is False:
        out.append((audio, "problem", "the sidecar says vocal but there is no lyrics file: it trains as "
                    "[Instrumental]" + ("" if not has_words(sidecar.get("lyrics")) else
                                        " although the sidecar has lyrics (ACE-Step reads none from the JSON)")))
    return out


def dataset_json_checks(path: Path) -> list[tuple[Path, str, str]]:
    """An ACE-Step dataset file (``{metadata, samples}``): every sample's audio must exist, and ACE-Step loads the
    file only when it and the audio lie under its working directory."""
    try:
        data = json.loads(read_text(path, MAX_DATASET_CHARS))
    except TooLargeError as exc:
        return [(path, "problem", f"{exc}: more than an ACE-Step dataset file holds")]
    except (OSError, ValueError, RecursionError) as exc:
        return [(path, "problem", f"not readable as JSON ({type(exc).__name__}); ACE-Step cannot load it")]
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        return [(path, "problem", "no \"samples\" list: not an ACE-Step dataset file")]
    out: list[tuple[Path, str, str]] = []
    relative = 0
    for number, sample in enumerate(samples, 1):
        ref = sample.get("audio_path") if isinstance(sample, dict) else None
        if not isinstance(ref, str) or not ref:
            out.append((path, "problem", f"sample #{number} has no audio_path"))
        elif not Path(ref).is_absolute():
            relative += 1
        elif not Path(ref).is_file():
            out.append((path, "problem", f"sample #{number}: audio {ref} does not exist"))
    out.append((path, "note", "ACE-Step loads this file only when it and every audio path in it lie under the "
                "directory ACE-Step runs in (links resolved)" + (f"; {relative} relative audio path(s) are read "
                                                                 "from there" if relative else "")))
    return out
