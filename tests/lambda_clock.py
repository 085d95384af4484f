"""A Lambda's remaining time for the functions' tests, spent by the handler's sleeps."""
from __future__ import annotations


class Clock:
    def __init__(self, remaining_ms: int):
        self.remaining = remaining_ms
        self.sleeps = 0

    def remaining_ms(self) -> int:
        return self.remaining

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.remaining -= int(seconds * 1000)
