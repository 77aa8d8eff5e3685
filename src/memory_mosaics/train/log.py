"""What a training run reports: the JSONL log (and TensorBoard), the progress bar, and the Ctrl-C / SIGTERM request to
stop at the end of the step."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Any

LOG_FILE = "log.jsonl"


class RunLog:
    """Rank 0's JSONL log of a run (and TensorBoard when installed and asked for). On resume, the records the
    interrupted run wrote after its last checkpoint are dropped: those steps are about to be redone."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None, tensorboard: bool) -> None:
        self.enabled, self.path, self.tb = enabled, run_dir / LOG_FILE, None
        self.records: list[dict[str, Any]] = []
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and _step(ln) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
            self.records = [json.loads(ln) for ln in kept]
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a line cut by kill -9: drop it


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``log.jsonl``."""
    lines = (Path(run_dir) / LOG_FILE).read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON, atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


class StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a request to checkpoint and stop at the end of the step; a second Ctrl-C
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        with contextlib.suppress(ValueError):  # not the main thread: leave the signals alone
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar of optimiser steps (a silent one when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
