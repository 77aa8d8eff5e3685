"""argparse types shared by every command: each refuses a bad value while the command line is read, by flag name,
before any work (not deep inside it, or after it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def out_folder(text: str) -> Path:
    """argparse type of a folder that a command writes into: a file of that name is refused when the command line is
    read, not when the results are written (after the work)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    return path


def device_name(text: str) -> str:
    """argparse type of --device: "auto" or a device this machine has, checked when the command line is read."""
    from memory_mosaics.devices import pick_device  # imports torch: only when a command parses its flags

    try:
        pick_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def at_least(low: int) -> Callable[[str], int]:
    """argparse type of an integer flag that must be >= ``low``: a count (1), or 0 where 0 means all, none or the
    default. A value below is refused when the command line is read; before, some commands divided by zero, crashed
    deep inside or, worse, printed a meaningless number."""

    def parse(text: str) -> int:
        value = int(text)  # argparse reports a ValueError as "invalid int value"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


positive, natural = at_least(1), at_least(0)
