"""Context encoding: turn per-document side information into a float vector.

`ContextEncoder` is the single source of truth for how context columns become model
inputs. It is fitted on the training split, travels with the loaders (and so with
`learn.export()`), and encodes `{'energy': 1.0, 'genre': 'rock'}` at generation time
exactly as the training data was encoded.

Numeric columns are standardized with the training mean and standard deviation;
categorical columns (object, string or category dtype) become one-hot features.
Dates (datetime or timedelta columns) are refused with advice: convert them to the number
that matters (e.g. `df['year'] = df['release_date'].dt.year`), so the encoding is explicit.
`fill` says what happens to missing values (NaN, None, NaT, inf): raise (default), fill,
or drop the rows (`ContextEncoder.drop_missing`, used by every loader's `from_df`).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["ContextEncoder", "check_columns", "first_rows"]

_FILL_POLICIES = ("mean", "zero", "drop")


def first_rows(index: Sequence, n: int = 5) -> str:
    "Format the first `n` offending row labels for an error message."
    index = list(index)
    try:
        index = sorted(index)
    except TypeError:
        pass
    shown = ", ".join(repr(i) for i in index[:n])
    more = f" and {len(index) - n} more" if len(index) > n else ""
    return f"[{shown}{more}]"


def check_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "column") -> None:
    "Raise a `KeyError` naming every column of `columns` missing from `df`."
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what} {missing} not found in the DataFrame; available columns: {list(df.columns)}")


def _is_categorical(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s.dtype) \
        or pd.api.types.is_bool_dtype(s.dtype)


def _check_not_dates(s: pd.Series, col: str) -> None:
    "Refuse datetime/timedelta context: pandas would turn each NaT into int64-min, silently."
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype) \
            or isinstance(s.dtype, pd.PeriodDtype):
        raise TypeError(f"context column {col!r} holds dates or durations ({s.dtype}); convert it to the number "
                        f"that matters first, e.g. df[{col!r}] = df[{col!r}].dt.year (missing dates become NaN "
                        "and follow the fill policy)")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))


def _looks_numeric(s: pd.Series) -> bool:
    "An object column whose values mostly parse as numbers was meant to be numeric."
    vals = s.dropna()
    if isinstance(s.dtype, pd.CategoricalDtype) or len(vals) == 0:
        return False
    parsed = pd.to_numeric(vals, errors="coerce")
    return parsed.notna().mean() >= 0.5


class ContextEncoder:
    """Encode context columns of a DataFrame (or a mapping) into a float tensor.

    Use `ContextEncoder.fit(train_df, columns)`; then `encode(df_or_mapping)`.
    `fill` sets the policy for missing numeric values: `None` (the default) raises,
    `'mean'` uses the training mean, `'zero'` uses 0.0, a number uses that number, and
    `'drop'` fits on the rows without missing context (loaders drop those rows with
    `drop_missing`; `encode` then refuses missing values).
    """

    def __init__(self, columns: Sequence[str], numeric: Mapping[str, tuple[float, float]],
                 categories: Mapping[str, list], fill: Any = None):
        self.columns = list(columns)
        self.numeric = dict(numeric)          # column -> (mean, std) of the training split
        self.categories = {c: list(v) for c, v in categories.items()}  # column -> ordered categories
        self.fill = fill
        self.mean_ = None                     # training mean of the encoded features, set by `fit`

    # ----------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, df: pd.DataFrame, columns: str | Sequence[str], fill: Any = None) -> "ContextEncoder":
        "Learn standardization statistics and category lists from the training rows of `df`."
        columns = [columns] if isinstance(columns, str) else list(columns)
        if not columns:
            raise ValueError("context_cols is empty: pass at least one context column, e.g. ['energy']")
        check_columns(df, columns, "context column")
        if fill is not None and not _is_number(fill) and fill not in _FILL_POLICIES:
            raise ValueError(f"fill={fill!r} is not a fill policy: use None (raise), 'mean', 'zero', 'drop' or a number")
        if _is_number(fill) and not math.isfinite(fill):
            raise ValueError(f"fill={fill!r}: a fill value must be a finite number")
        if fill == "drop":
            df = cls.drop_missing(df, columns)
        if len(df) == 0:
            raise ValueError(f"no rows to fit the context encoder of {columns} on")
        numeric, categories = {}, {}
        for c in columns:
            s = df[c]
            _check_not_dates(s, c)
            if _is_categorical(s) and not _looks_numeric(s):
                bad = s.index[s.isna()]
                if len(bad):
                    raise ValueError(f"context column {c!r} has missing values in rows {first_rows(bad)}; "
                                     "fill them (e.g. df[col].fillna('unknown')) before building the loaders, "
                                     "or pass fill='drop'")
                cls._check_not_mixed(s, c)
                cats = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else sorted(s.unique().tolist(), key=str)
                categories[c] = cats
            else:
                vals = cls._numeric_values(s, c)
                finite = vals[np.isfinite(vals)]
                if len(finite) == 0:
                    raise ValueError(f"context column {c!r} has no finite values")
                mean, std = float(finite.mean()), float(finite.std())
                numeric[c] = (mean, std if std > 0 else 1.0)
        enc = cls(columns, numeric, categories, fill)
        enc.mean_ = enc.encode(df).mean(0)
        return enc

    @staticmethod
    def _check_not_mixed(s: pd.Series, col: str) -> None:
        """A text column in which some values are numbers (or numeric text, but under half) was most
        likely meant to be numeric with a few bad rows: as categories it would fail later, at the
        first unseen number. Refuse numbers mixed with text; warn about numeric-looking text."""
        is_num = s.map(_is_number)
        if is_num.any():
            text = s.index[~is_num]
            raise ValueError(f"context column {col!r} mixes numbers (e.g. {s[is_num].iloc[0]!r}) and text "
                             f"(e.g. {s.loc[text[0]]!r} in rows {first_rows(text)}): make it numeric (fix or drop "
                             f"those rows) or categorical (df[{col!r}].astype(str))")
        parsed = pd.to_numeric(s, errors="coerce")
        if parsed.notna().any():
            warnings.warn(f"context column {col!r} is treated as categorical ({s.nunique()} categories), although "
                          f"{int(parsed.notna().sum())} of its {len(s)} values are numbers written as text "
                          f"(e.g. {s[parsed.notna()].iloc[0]!r}); if it is numeric, fix the other rows (e.g. "
                          f"{s[parsed.isna()].iloc[0]!r}) first", UserWarning, stacklevel=4)

    @staticmethod
    def drop_missing(df: pd.DataFrame, columns: str | Sequence[str]) -> pd.DataFrame:
        """`df` without the rows whose context is missing (NaN, None, NaT) or infinite in any of
        `columns`: the `fill='drop'` policy, for loaders to apply before they split and tokenize."""
        columns = [columns] if isinstance(columns, str) else list(columns)
        check_columns(df, columns, "context column")
        keep = pd.Series(True, index=df.index)
        for c in columns:
            s = df[c]
            keep &= s.notna().to_numpy()
            if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
                keep &= np.isfinite(s.to_numpy(dtype=np.float64, na_value=np.nan))
        return df[keep.to_numpy()]

    @staticmethod
    def _numeric_values(s: pd.Series, col: str) -> np.ndarray:
        "Numeric values of `s`, with a clear error naming rows that are not numbers."
        _check_not_dates(s, col)
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        parsed = pd.to_numeric(s, errors="coerce")
        bad = s.index[parsed.isna() & s.notna()]
        if len(bad):
            raise ValueError(f"context column {col!r} is numeric but has non-numeric values in rows "
                             f"{first_rows(bad)} (e.g. {s.loc[bad[0]]!r}); fix them, or cast the column "
                             "to 'category' if it is categorical")
        return parsed.to_numpy(dtype=np.float64, na_value=np.nan)

    # ---------------------------------------------------------------- encoding
    @property
    def feature_names(self) -> list[str]:
        "One name per encoded feature: numeric columns by name, categories as `column=value`."
        names = []
        for c in self.columns:
            names += [c] if c in self.numeric else [f"{c}={v}" for v in self.categories[c]]
        return names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def _fill_value(self, col: str) -> float:
        mean, _ = self.numeric[col]
        return {"mean": mean, "zero": 0.0}.get(self.fill, self.fill)

    def encode(self, data: Mapping[str, Any] | pd.DataFrame) -> torch.Tensor:
        """Encode a DataFrame to `(n_rows, n_features)`, or one mapping to `(n_features,)`.

        Unknown or missing keys and unseen categories raise a `KeyError`/`ValueError`."""
        if isinstance(data, pd.DataFrame):
            return self._encode_df(data)
        if not isinstance(data, Mapping):
            raise TypeError(f"encode takes a mapping such as {{'{self.columns[0]}': ...}} or a DataFrame, "
                            f"not {type(data).__name__}")
        unknown = [k for k in data if k not in self.columns]
        if unknown:
            raise KeyError(f"unknown context key(s) {unknown}; this model was trained with {self.columns}")
        missing = [c for c in self.columns if c not in data]
        if missing:
            raise KeyError(f"missing context key(s) {missing}; pass a value for each of {self.columns}")
        data = dict(data)
        for c in self.numeric:
            v = data[c]
            if isinstance(v, (torch.Tensor, np.ndarray)) and np.prod(v.shape, dtype=int) == 1:
                v = data[c] = v.item()            # a 0-d tensor or array holds one number
            if not _is_number(v):
                raise ValueError(f"context {c!r} is numeric in this model and must be a number, got {v!r} "
                                 f"({type(v).__name__})")
        for c, cats in self.categories.items():
            v = data[c]
            if v not in cats and _is_number(v) and not any(_is_number(k) for k in cats):
                raise ValueError(f"context {c!r} is categorical in this model (its training values were text, "
                                 f"e.g. {cats[0]!r}), so the number {v!r} is none of its {len(cats)} categories; "
                                 "if it was meant to be numeric, make the training column numeric and retrain")
        return self._encode_df(pd.DataFrame({c: [data[c]] for c in self.columns}))[0]

    def _encode_df(self, df: pd.DataFrame) -> torch.Tensor:
        check_columns(df, self.columns, "context column")
        parts = []
        for c in self.columns:
            s = df[c]
            if c in self.numeric:
                vals = self._numeric_values(s, c)
                bad = ~np.isfinite(vals)
                if bad.any():
                    if self.fill is None or self.fill == "drop":
                        rows = s.index[bad]
                        how = ("fill='drop' drops such rows when loaders are built, not when encoding: drop them"
                               if self.fill == "drop" else
                               "drop or fill those rows, or pass fill='mean' (or 'zero', 'drop', or a number)")
                        raise ValueError(f"context column {c!r} has NaN or inf in rows {first_rows(rows)}; {how}")
                    vals = np.where(bad, self._fill_value(c), vals)
                mean, std = self.numeric[c]
                parts.append(torch.tensor((vals - mean) / std, dtype=torch.float32)[:, None])
            else:
                cats = self.categories[c]
                lookup = {v: i for i, v in enumerate(cats)}
                codes = s.map(lookup)
                bad = s.index[codes.isna()]
                if len(bad):
                    raise ValueError(f"context column {c!r} has unseen categories in rows {first_rows(bad)} "
                                     f"(e.g. {s.loc[bad[0]]!r}); known categories: {cats}")
                onehot = torch.zeros(len(s), len(cats))
                onehot[torch.arange(len(s)), torch.tensor(codes.to_numpy(dtype=np.int64))] = 1.0
                parts.append(onehot)
        return torch.cat(parts, dim=1) if parts else torch.zeros(len(df), 0)

    def decode(self, encoded: torch.Tensor) -> dict[str, Any]:
        "Invert `encode` for one row: numeric values un-standardized, one-hot back to its category."
        encoded = torch.as_tensor(encoded, dtype=torch.float32).reshape(-1)
        if encoded.numel() != self.n_features:
            raise ValueError(f"expected {self.n_features} encoded features {self.feature_names}, got {encoded.numel()}")
        out, i = {}, 0
        for c in self.columns:
            if c in self.numeric:
                mean, std = self.numeric[c]
                out[c] = float(encoded[i]) * std + mean
                i += 1
            else:
                k = len(self.categories[c])
                out[c] = self.categories[c][int(encoded[i:i + k].argmax())]
                i += k
        return out

    def mean_context(self) -> torch.Tensor:
        "The training mean of the encoded features (what 'every document at the mean' feeds the model)."
        if self.mean_ is None:
            raise ValueError("this encoder was not fitted with ContextEncoder.fit")
        return self.mean_.clone()

    def same_as(self, other: "ContextEncoder") -> bool:
        "True if `other` encodes every input exactly as this encoder does."
        return (isinstance(other, ContextEncoder) and self.columns == other.columns
                and self.categories == other.categories and self.numeric.keys() == other.numeric.keys()
                and all(math.isclose(a, b) for c in self.numeric for a, b in zip(self.numeric[c], other.numeric.get(c, (math.nan,) * 2))))

    def __repr__(self) -> str:
        return f"ContextEncoder(columns={self.columns}, n_features={self.n_features})"
