"""Clock constants shared by the mixer modules."""

SAMPLE_RATE = 48_000
"""Mixer sample rate in Hz; speakers' media clocks are expected at the same rate."""

FRAME_SAMPLES = 960
"""Samples per tick (20 ms at 48 kHz)."""

TICK_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
"""Duration of one tick in seconds (0.02)."""

FULL_SCALE = 32768.0
"""Full scale of int16 PCM, the 0 dBFS reference."""
