"""How the pages and the README write a measurement in words: durations, short counts, the spread of
a result over noise draws (no Streamlit, so scripts use it too)."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """41 min, 1 h 43 min; "time not recorded" for None."""
    if seconds is None:
        return "time not recorded"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def count(n: int | None) -> str:
    """4.58M, 229k, 950: short counts for chart labels."""
    if n is None:
        return "?"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.0f}k" if n >= 1e4 else f"{n:,}"


def spread(std: float | None) -> str:
    """The standard deviation over noise draws as written beside a result: 0.0002, or "< 0.0001"
    where the manifest's four decimals round it to zero; "n/a" when not measured."""
    if std is None:
        return "n/a"
    return "< 0.0001" if std < 5e-5 else f"{std:.4f}"
