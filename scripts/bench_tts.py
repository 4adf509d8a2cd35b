"""What <Say> costs: CPU seconds (espeak-ng + sox, child processes) per second of rendered speech.

    .venv/bin/python scripts/bench_tts.py [-n 20]

Renders ``n`` different sentences (nothing cached) with the engine <Say> uses and prints CPU per second of
audio, wall time per rendering, and the real-time factor.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stasis_app.tts import EspeakEngine, SpeechCache

TEXT = "Thank you for calling. Your call number {n} is important to us; please hold while we connect you."


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cache = SpeechCache(Path(folder), EspeakEngine())
        await cache.render("warm up", "man", "en")  # the voice list is read once
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        audio = 0.0
        for n in range(count):
            key = await cache.render(TEXT.format(n=n), "woman", "en-US")
            with wave.open(str(cache.path(key))) as w:
                audio += w.getnframes() / w.getframerate()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{count} renderings, {audio:.1f} s of speech at 8 kHz")
    print(f"CPU per second of speech: {cpu / audio * 1000:.1f} ms (espeak-ng + sox)")
    print(f"wall per rendering: {wall / count * 1000:.0f} ms; real-time factor {wall / audio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20)
    asyncio.run(main(parser.parse_args().n))
