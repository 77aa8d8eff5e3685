"""A small made-up corpus: stories from templates, seeded, so every test builds the same text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

NAMES = ["Lily", "Ben", "Tom", "Mia", "Sam", "Zoë"]
THINGS = ["ball", "kite", "cat", "red car", "big tree", "boat"]
ACTS = ["found", "saw", "liked", "lost", "painted", "shared"]


def make_stories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    stories = []
    for _ in range(n):
        name, thing, act = rng.choice(NAMES), rng.choice(THINGS), rng.choice(ACTS)
        paragraphs = [
            f"Once upon a time, {name} {act} a {thing}. It was {rng.randint(2, 99)} steps away.",
            f'"Look!" said {name}. "The {thing} is here." They were happy, and the sun was warm ☀.',
        ]
        stories.append("\n".join(paragraphs[: rng.randint(1, 2)]))
    return stories


@pytest.fixture
def stories() -> list[str]:
    return make_stories(60)


@pytest.fixture
def corpus(tmp_path: Path, stories: list[str]) -> Path:
    """TinyStories' .txt format: each story followed by a line <|endoftext|>."""
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories), encoding="utf-8")
    return path
