"""The numeric options of the measurements and losses, checked in one place before any work starts.

Each check raises :class:`~embspace.errors.InputError` naming the API parameter and the value given, so that
``--t nan`` or ``alpha=-1`` is one clear line (exit code 2 from the command line) instead of a report of nulls:

- ``t``, the uniformity temperature of exp(−t‖a − b‖²) (Wang & Isola 2020: t > 0, t = 2 by default): finite,
  > 0 (t ≤ 0 turns the Gaussian potential into a growing one, t = nan makes every sum nan), from :data:`MIN_T`
  (below it U ≈ −t·E‖a − b‖² is a mean of exponentials within 10⁻⁶ of 1, and float64 keeps too few of its
  digits) to :data:`MAX_T` (the float32 tiles round each exponent −t·d² to about 3·10⁻⁷·t, so beyond 10⁴
  rounding alone would move U by more than 10⁻³);
- ``alpha``, the alignment exponent of ‖x̂ − ŷ‖^α (Wang & Isola 2020: α > 0, α = 2): finite, > 0 and at most
  :data:`MAX_ALPHA` (‖x̂ − ŷ‖ ≤ 2 and 2^1000 is still a float64);
- counts (``histogram_bins``, ``hubness_k``, each of ``recall_ks``, ``tile``): integers ≥ 1, bins at most
  :data:`MAX_BINS` (narrower bins than 2·10⁻⁶ are below float32's resolution of a cosine near 1);
- ``seed``: an integer ≥ 0 (numpy's seed sequences take no negative entropy);
- ``alpha_req_range``: None or two integers 1 ≤ first < last (the 1-based ranks of the fit).

>>> check_t(2.0)
>>> check_t(float("nan"))
Traceback (most recent call last):
    ...
embspace.errors.InputError: t: the uniformity temperature must be a finite number > 0 (Wang & Isola 2020), got nan
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from embspace.errors import InputError

MIN_T, MAX_T = 1e-6, 1e4
MAX_ALPHA = 1000.0
MAX_BINS = 1_000_000


def _real(value: object) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    """``value`` as an int when it is an integer (numpy's too, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_t(t: object, name: str = "t") -> None:
    """The uniformity temperature: a finite number, :data:`MIN_T` ≤ t ≤ :data:`MAX_T`."""
    value = _real(t)
    if value is None or not math.isfinite(value) or value <= 0:
        raise InputError(name, f"the uniformity temperature must be a finite number > 0 (Wang & Isola 2020), got {t!r}")
    if value < MIN_T:
        raise InputError(name, f"the uniformity temperature must be at least {MIN_T:g} (below, U ≈ −t·E‖a − b‖² "
                               f"is lost in the rounding of the mean of exponentials), got {t!r}")
    if value > MAX_T:
        raise InputError(name, f"the uniformity temperature must be at most {MAX_T:g} (float32 tiles round the "
                               f"exponent −t·‖a − b‖² to ~3e-7·t), got {t!r}")


def check_alpha(alpha: object, name: str = "alpha") -> None:
    """The alignment exponent: a finite number, 0 < α ≤ :data:`MAX_ALPHA`."""
    value = _real(alpha)
    if value is None or not math.isfinite(value) or value <= 0 or value > MAX_ALPHA:
        raise InputError(name, f"the alignment exponent must be a finite number in (0, {MAX_ALPHA:g}] "
                               f"(Wang & Isola 2020 use 2), got {alpha!r}")


def check_count(value: object, name: str, *, least: int = 1, most: int | None = None, what: str = "") -> None:
    """An integer ``least ≤ value ≤ most``."""
    number = _integer(value)
    if number is None or number < least or (most is not None and number > most):
        bound = f"≥ {least}" if most is None else f"from {least} to {most:,}"
        raise InputError(name, f"{what or 'must be'} an integer {bound}, got {value!r}")


def check_bins(bins: object, name: str = "histogram_bins") -> None:
    """Histogram bins over [−1, 1]: an integer from 1 to :data:`MAX_BINS`."""
    number = _integer(bins)
    if number is None or number < 1:
        raise InputError(name, f"needs at least 1 bin (an integer), got {bins!r}")
    if number > MAX_BINS:
        raise InputError(name, f"at most {MAX_BINS:,} bins (width 2e-6, float32's resolution near 1), got {bins!r}")


def check_ks(ks: object, name: str = "recall_ks") -> None:
    """recall@k cut-offs: a non-empty sequence of integers ≥ 1."""
    if isinstance(ks, str | bytes) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise InputError(name, f"must be a non-empty sequence of integers ≥ 1, got {ks!r}")
    for k in ks:
        check_count(k, name, what="each k must be")


def check_fit_range(fit_range: object, name: str = "alpha_req_range") -> None:
    """None, or two integers 1 ≤ first < last."""
    if fit_range is None:
        return
    if isinstance(fit_range, str | bytes) or not isinstance(fit_range, Sequence) or len(fit_range) != 2:
        raise InputError(name, f"must be None or two integers (first, last), got {fit_range!r}")
    first, last = (_integer(v) for v in fit_range)
    if first is None or last is None or not 1 <= first < last:
        raise InputError(name, f"must be two integers 1 ≤ first < last (1-based ranks), got {fit_range!r}")


def check_choice(value: object, choices: Sequence[str], name: str, what: str, explain: str = "") -> None:
    """One of the named ``choices``; else one line naming them (``explain``, in parentheses, says what each is)."""
    if value not in choices:
        raise InputError(name, f"unknown {what} {value!r}; choose one of {', '.join(choices)}"
                               + (f" ({explain})" if explain else ""))


def check_measure_options(*, t: object = 2.0, alpha: object = 2.0, histogram_bins: object = 200,
                          recall_ks: object = (1,), hubness_k: object = 10, tile: object = 1, seed: object = 0,
                          alpha_req_range: object = None) -> None:
    """Every numeric option of :func:`embspace.measure`, checked before anything is read."""
    check_t(t)
    check_alpha(alpha)
    check_bins(histogram_bins)
    check_ks(recall_ks)
    check_count(hubness_k, "hubness_k")
    check_count(tile, "tile")
    check_count(seed, "seed", least=0)
    check_fit_range(alpha_req_range)


def check_loss_options(*, t: object = 2.0, alpha: object = 2.0) -> None:
    """The uniformity temperature and alignment exponent of a loss (CUA, CUAXU)."""
    check_t(t)
    check_alpha(alpha)
