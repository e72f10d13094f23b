"""Audio helpers for Twilio Media Streams: 8 kHz mono G.711 mu-law.

``audioop`` was removed in Python 3.13, so the encoder is a few lines of
pure Python; speed does not matter because each tone is rendered once and cached.
"""

import functools
import itertools
import math

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 samples, one byte each

_BIAS = 0x21  # G.711 bias, on the 14-bit scale
_MAX = 0x1FFF  # top of the last segment: louder input saturates there


def ulaw_encode_sample(sample):
    """Encode one signed 16-bit PCM sample as a G.711 mu-law byte."""
    value = sample >> 2  # mu-law is defined on 14-bit samples
    # mu-law bytes are sent inverted (silence is 0xFF); negative ones keep bit 7 clear.
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value + _BIAS, _MAX)
    # The segment is how far the highest set bit sits above bit 5.
    segment = max(value.bit_length() - 6, 0)
    mantissa = (value >> (segment + 1)) & 0x0F
    return ((segment << 4) | mantissa) ^ mask


def ulaw_encode(samples):
    return bytes(ulaw_encode_sample(s) for s in samples)


@functools.lru_cache(maxsize=8)
def _render_tone(freq_hz, amplitude):
    # One second is rendered and looped: a whole-number frequency fits an exact
    # number of cycles into a second, so the loop point has no click.
    peak = amplitude * 32767
    pcm = [
        round(peak * math.sin(2 * math.pi * freq_hz * n / SAMPLE_RATE)) for n in range(SAMPLE_RATE)
    ]
    audio = ulaw_encode(pcm)
    return tuple(audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES))


def tone_frames(freq_hz=440, amplitude=0.25):
    """Return an endless iterator of 20 ms (160-byte) mu-law frames of a sine tone."""
    return itertools.cycle(_render_tone(int(freq_hz), amplitude))
