"""Where in a song a voice is heard: Silero VAD (MIT, shipped inside the ``silero-vad`` package, so nothing is
downloaded) over 16 kHz audio in 32 ms frames.

Whisper writes words over instrumental music; a voice-activity check is the guard that does not depend on the
transcriber's own confidence. Silero's speech probability stays near 0 on rendered instrumental music and above
0.5 on speech and on voice over music (checked on the test material in tests/test_lyrics_whisper.py). Chunks
without any voiced frame are not sent to the transcriber at all, and a region with less than
LYRICS_MIN_VOICE_SECONDS of voice keeps no words.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

VAD_SR = 16000  # Hz: the rate Silero VAD and Whisper both take
FRAME = 512  # samples per Silero frame at 16 kHz (32 ms); the model takes exactly this many
VOICED_PROBABILITY = 0.5  # Silero's own default threshold for "speech"
STREAM_FRAMES = 938  # 30 s per stream: a 4-minute song runs as 8 streams side by side (8 times fewer calls)
WARM_UP_FRAMES = 16  # 0.5 s of context before each stream's first kept frame (the model's state settles in it)

_MODEL = None
_MODEL_LOCK = threading.Lock()  # the model keeps a recurrent state: one song at a time per process


@dataclass
class VoiceActivity:
    """Speech probability per frame of FRAME samples; frame ``i`` covers [i, i + 1) * frame_seconds."""

    probabilities: np.ndarray
    frame_seconds: float = FRAME / VAD_SR

    def voiced_seconds(self, start: float, end: float) -> float:
        """Seconds of voice (frames at or above VOICED_PROBABILITY) inside [start, end) song seconds."""
        lo = max(0, int(np.floor(start / self.frame_seconds)))
        hi = max(lo, int(np.ceil(end / self.frame_seconds)))
        return float(np.count_nonzero(self.probabilities[lo:hi] >= VOICED_PROBABILITY)) * self.frame_seconds


def _model():
    global _MODEL
    if _MODEL is None:
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad

            _MODEL = load_silero_vad()  # the TorchScript model packaged with silero-vad (about 2 MB)
        finally:
            # silero_vad sets torch's thread count to 1 for the whole process when imported; every other model
            # of the process (a CPU description engine, Whisper) would then run on one core
            torch.set_num_threads(threads)
    return _MODEL


def voice_activity(audio: np.ndarray, sr: int = VAD_SR) -> VoiceActivity:
    """Silero's speech probability for each 32 ms frame of ``audio`` (mono float, ``sr`` must be 16 kHz).

    The model is recurrent, so it runs frame by frame; to need fewer calls, the song is cut into streams of
    STREAM_FRAMES that run side by side as one batch. Each stream after the first starts WARM_UP_FRAMES early and
    those outputs are dropped, so every kept frame has the same half second of context as in one long pass."""
    import torch

    if sr != VAD_SR:
        raise ValueError(f"voice activity needs {VAD_SR} Hz audio, got {sr} Hz")
    samples = np.ascontiguousarray(np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1)))
    count = samples.size // FRAME
    probabilities = np.zeros(count, dtype=np.float32)
    if count == 0:
        return VoiceActivity(probabilities)
    frames = torch.from_numpy(samples[:count * FRAME].reshape(count, FRAME))
    starts = list(range(0, count, STREAM_FRAMES))
    begins = [max(0, s - WARM_UP_FRAMES) for s in starts]
    steps = max(min(s + STREAM_FRAMES, count) - b for s, b in zip(starts, begins))
    batch = torch.zeros((len(starts), steps, FRAME), dtype=torch.float32)
    for row, (s, b) in enumerate(zip(starts, begins)):
        piece = frames[b:min(s + STREAM_FRAMES, count)]
        batch[row, :len(piece)] = piece
    with _MODEL_LOCK, torch.inference_mode():
        model = _model()
        model.reset_states()
        out = torch.stack([model(batch[:, t], VAD_SR).reshape(-1) for t in range(steps)], dim=1).numpy()
    for row, (s, b) in enumerate(zip(starts, begins)):
        kept = min(s + STREAM_FRAMES, count) - s
        probabilities[s:s + kept] = out[row, s - b:s - b + kept]
    return VoiceActivity(probabilities)
