"""``mosaic paper report``: the Markdown sections that the figure commands wrote, joined into one README.md."""

from __future__ import annotations

from pathlib import Path

ORDER = ["depth", "ood", "prompts", "attention", "extrapolate"]  # the report's section order: the paper's


def report(out: Path, title: str) -> Path:
    """README.md: the sections in the paper's order; a variant such as prompts_nb1.md follows its figure's section."""
    out = Path(out)
    sections = sorted((p for p in out.glob("*.md") if p.name != "README.md"), key=section_key)
    if not sections:
        raise FileNotFoundError(f"{out} holds no sections (*.md); run the other `mosaic paper` commands first")
    text = f"# {title}\n\n" + "\n\n".join(p.read_text().strip() for p in sections) + "\n"
    (out / "README.md").write_text(text)
    return out / "README.md"


def section_key(path: Path) -> tuple[int, str]:
    """Rank in ORDER of the figure a section belongs to (unknown sections last), then its name."""
    rank = next((i for i, n in enumerate(ORDER) if path.stem == n or path.stem.startswith(f"{n}_")), len(ORDER))
    return rank, path.stem
