"""An uploaded CSV of 2-D points, checked and parsed (no Streamlit).

Every refusal is a `ValueError` with one sentence a visitor can act on; the file is checked
against the caps of `limits` before and after parsing.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import torch

from dashboard.services import limits


def _csv_problem(message: str) -> str:
    """pandas' reason for refusing a CSV, in plain words."""
    ragged = re.search(r"Expected (\d+) fields? in line (\d+), saw (\d+)", message)
    if ragged:
        first, line, saw = ragged.groups()
        return (f"The file could not be read as CSV: line {line} has {saw} values; the first line has {first}. "
                "Every line needs the same two columns (x and y).")
    return "The file could not be read as CSV: its lines do not split into columns of values."


def parse_points_csv(data: bytes) -> torch.Tensor:
    """Uploaded CSV bytes -> float32 points `(N, 2)`; raises `ValueError` with a user-facing reason.

    Accepts exactly two numeric columns, with or without a header row.
    """
    if len(data) > limits.MAX_UPLOAD_BYTES:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {limits.MAX_UPLOAD_BYTES / 1e6:g} MB.")
    if not data.strip():
        raise ValueError("The file is empty.")
    try:
        text = data.decode("utf-8-sig")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
    except UnicodeDecodeError:
        raise ValueError("This is not a text CSV file (it contains binary data).") from None
    try:
        table = pd.read_csv(io.StringIO(text), header=None, dtype=str, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise ValueError(_csv_problem(str(err))) from None
    if table.shape[1] != 2:
        raise ValueError(f"The file has {table.shape[1]} column(s); it needs exactly two columns of "
                         "numbers (x and y).")
    numbers = table.apply(pd.to_numeric, errors="coerce")
    if numbers.iloc[0].isna().all() and table.iloc[0].notna().all():
        table, numbers = table.iloc[1:], numbers.iloc[1:]  # a header row
    bad = numbers.isna() & table.notna()
    if bad.any().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise ValueError(f"Row {table.index[row] + 1}, column {col + 1} holds {table.iat[row, col]!r}, "
                         "which is not a number.")
    values = numbers.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise ValueError(f"Row {table.index[row] + 1} has a missing, NaN or infinite value; every point "
                         "needs two finite numbers.")
    if len(values) < limits.MIN_POINTS:
        raise ValueError(f"The file has {len(values)} point(s); at least {limits.MIN_POINTS} are needed.")
    if len(values) > limits.MAX_POINTS:
        raise ValueError(f"The file has {len(values):,} points; the limit is {limits.MAX_POINTS:,} per session.")
    if np.abs(values).max() > 1e6:
        raise ValueError("Some values are larger than a million; please rescale the data.")
    return torch.from_numpy(values.astype(np.float32))
