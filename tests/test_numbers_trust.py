"""No silently wrong numbers: rows at any scale normalise correctly, and bad numeric options are refused.

Generated cases (parametrised grids and hypothesis), each compared with float64 numpy on the same values:

- rows of every floating dtype scaled across its whole range, from its smallest subnormal to near its largest
  finite value (float32 1e-45 … 1e38, float64 5e-324 … 1e307, float16, bfloat16): every metric equals the float64
  brute force of the unit rows, and nothing in the report is NaN or None;
- ``--require-normalized`` names the true norm of a huge or tiny row, not inf or 0;
- t, alpha and the integer options at NaN, ±inf, zero, negative, non-number, out-of-range values: one
  :class:`InputError` naming the parameter, from the API, the CLI (exit code 2, nothing written) and the losses.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

import embspace
from embspace.errors import InputError
from embspace.kernels.rows import normalize_block
from embspace.options import MAX_ALPHA, MAX_BINS, MAX_T, MIN_T, check_measure_options
from tests import reference as ref

CPU = torch.device("cpu")
FAMILIES = "gap,alignment,cone,rmg,uniformity,retrieval,hubness,spectrum,separability"
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# (dtype, scales): from the smallest subnormal to near the largest finite value of each dtype
SCALES = {
    torch.float64: [5e-324 * 2**10, 1e-310, 1e-300, 1e-200, 1e-30, 1.0, 1e30, 1e200, 1e300, 1e306],
    torch.float32: [1e-45 * 2**10, 1e-40, 1e-38, 1e-30, 1e-20, 1.0, 1e20, 1e30, 1e37],
    torch.float16: [6e-8 * 2**6, 1e-5, 1e-3, 1.0, 100.0, 6e3],
    torch.bfloat16: [2e-39, 1e-38, 1e-30, 1.0, 1e30, 1e37],
}
GRID = [(dtype, scale) for dtype, scales in SCALES.items() for scale in scales]


def scaled(base: np.ndarray, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``base · scale`` stored in ``dtype`` (product taken in float64, then rounded once)."""
    return (torch.from_numpy(base) * scale).to(dtype)


def exact(rows: torch.Tensor) -> np.ndarray:
    """The stored values as float64 (exact for every float dtype)."""
    return rows.double().numpy()


def directions(a: np.ndarray) -> np.ndarray:
    """Unit rows in float64 numpy, each row divided by its largest |a_k| first (numpy's own norm squares too)."""
    b = a / np.abs(a).max(axis=1, keepdims=True)
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def finite_report(report) -> None:
    for path, value in report.flat().items():
        assert value is not None and math.isfinite(value), (path, value)


@pytest.mark.parametrize(("dtype", "scale"), GRID, ids=[f"{d}-{s:g}" for d, s in GRID])
def test_rows_at_any_scale_give_the_metrics_of_their_directions(dtype, scale):
    x0, y0 = ref.paired_data("cone", 40, 12, seed=3)
    x, y = scaled(x0, scale, dtype), scaled(y0, scale * 0.37, dtype)
    assert torch.isfinite(x).all() and (x != 0).any(1).all() and (y != 0).any(1).all()
    xs, ys = directions(exact(x)), directions(exact(y))  # the reference sees exactly the stored values
    report = embspace.measure(image=x, text=y, metrics=FAMILIES, precision="fp64", device="cpu")
    finite_report(report)
    tol = 1e-9
    assert report["gap"] == pytest.approx(ref.gap(xs, ys), abs=tol)
    assert report["cone.image"] == pytest.approx(ref.cone(xs), abs=tol)
    assert report["alignment"] == pytest.approx(ref.alignment(xs, ys), abs=tol)
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(xs), abs=tol)
    assert report["uniformity.cross"] == pytest.approx(ref.uniformity_cross(xs, ys), abs=tol)
    assert report["uniformity.joint"] == pytest.approx(ref.uniformity_joint(xs, ys), abs=tol)
    assert report["recall@1.image->text"] == ref.recall(xs, ys, 1)
    assert report["rankme.image"] == pytest.approx(ref.rankme(xs), rel=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_default_precision_on_extreme_rows_is_the_same_as_on_unit_rows(dtype):
    """fp32 tiles: rows of norm 1e30 (or the dtype's extreme) measure as their unit rows do, to the last bits."""
    x0 = ref.cone_data(60, 16, 1.0, seed=4)
    scale = {torch.float32: 1e30, torch.float64: 1e200, torch.float16: 1e-6, torch.bfloat16: 1e-35}[dtype]
    x = scaled(x0, scale, dtype)
    unit = torch.from_numpy(directions(exact(x)))
    big = embspace.measure(image=x, metrics="cone,uniformity,spectrum", device="cpu")
    small = embspace.measure(image=unit, metrics="cone,uniformity,spectrum", device="cpu")
    finite_report(big)
    for path, value in small.flat().items():
        assert big[path] == pytest.approx(value, rel=1e-6, abs=1e-6), path


@given(exponent=st.integers(-1074, 1023), seed=st.integers(0, 2**16), dim=st.integers(1, 40))
@SETTINGS
def test_normalize_block_is_exact_at_every_float64_exponent(exponent, seed, dim):
    rng = np.random.default_rng(seed)
    block = torch.from_numpy(rng.normal(size=(3, dim)) * 2.0**exponent)
    block[block.abs().amax(1) == 0, 0] = 2.0**exponent  # keep every row non-zero
    expected = directions(exact(block))
    unit = normalize_block(block, "x", 0, False, torch.float64).numpy()
    np.testing.assert_allclose(unit, expected, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-14)


@given(exponent=st.integers(-149, 127), seed=st.integers(0, 2**16), dim=st.integers(1, 40))
@SETTINGS
def test_normalize_block_gives_unit_rows_at_every_float32_exponent(exponent, seed, dim):
    rng = np.random.default_rng(seed)
    block = (torch.from_numpy(rng.normal(size=(3, dim))) * 2.0**exponent).float()
    block[block.abs().amax(1) == 0, 0] = float(np.float32(2.0**exponent))
    finite = torch.isfinite(block).all(1)
    unit = normalize_block(block[finite], "x", 0, False, torch.float32)
    expected = directions(exact(block[finite]))
    np.testing.assert_allclose(unit.double().numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(("dtype", "scale", "shown"), [(torch.float32, 1e30, "1e+30"), (torch.float64, 1e200, "1e+200"),
                                                       (torch.float32, 1e-30, "1e-30"),
                                                       (torch.float64, 1e-310, "1e-310")])
def test_require_normalized_names_the_true_norm(dtype, scale, shown):
    row = torch.zeros((2, 4), dtype=dtype)
    row[:, 0] = scale
    with pytest.raises(InputError, match=re.escape(f"row 0 has norm {shown}, not 1")):
        embspace.measure(image=row, metrics="cone", normalize=False, device="cpu")


def test_an_all_zero_row_is_refused_with_its_row_number():
    block = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(InputError, match="row 7 has zero norm"):
        normalize_block(block, "x.npy", 6, False)


# --- options ---------------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    *[("t", v) for v in (math.nan, math.inf, -math.inf, 0.0, -1000.0, -1e-300, MIN_T / 2, MAX_T * 2, True, "2", None)],
    *[("alpha", v) for v in (math.nan, math.inf, 0.0, -2.0, MAX_ALPHA * 2, False, "2")],
    *[("histogram_bins", v) for v in (0, -1, 2.5, True, MAX_BINS + 1, "10")],
    *[("recall_ks", v) for v in ((), (0,), (1, -5), (1.5,), "1", 5)],
    *[("hubness_k", v) for v in (0, -3, 1.0, True)],
    *[("tile", v) for v in (0, -64, 8.0)],
    *[("seed", v) for v in (-1, 1.5, "0")],
    *[("alpha_req_range", v) for v in ((0, 5), (5, 5), (6, 2), (1,), "ab", (1.0, 4))],
]


@pytest.mark.parametrize(("name", "value"), BAD_OPTIONS, ids=[f"{n}={v!r}" for n, v in BAD_OPTIONS])
def test_bad_options_are_one_error_naming_the_parameter(name, value):
    x, y = ref.paired_data("random", 20, 4, seed=1)
    with pytest.raises(InputError) as caught:
        embspace.measure(image=x, text=y, metrics="uniformity", device="cpu", **{name: value})
    assert caught.value.where == name
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("t", [MIN_T, 0.5, 2, np.float32(3.0), MAX_T])
def test_valid_temperatures_are_accepted_and_give_finite_non_positive_uniformity(t):
    x = ref.cone_data(30, 8, 1.0, seed=2)
    report = embspace.measure(image=x, metrics="uniformity", device="cpu", precision="fp64", t=t)
    d2 = pdist(ref.unit(x), "sqeuclidean")
    expected = float(logsumexp(-float(t) * d2) - np.log(len(d2)))  # log-sum-exp: no underflow at t = 10⁴
    assert report["uniformity.image"] == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert report["uniformity.image"] <= 0


def test_option_checks_accept_the_defaults():
    check_measure_options()
    check_measure_options(t=np.float64(2), alpha=np.int64(1), histogram_bins=np.int32(50), recall_ks=[1, np.int64(5)],
                          hubness_k=10, tile=4096, seed=0, alpha_req_range=(1, 2))


@pytest.mark.parametrize(("flag", "value", "name"), [("--t", "nan", "--t"), ("--t", "-1000", "--t"),
                                                      ("--alpha", "nan", "--alpha")])  # the CLI names its flags
def test_cli_refuses_bad_options_with_exit_code_2(tmp_path, flag, value, name):
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--sample", "--metrics", "uniformity",
                           flag, value, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(f"error: {name}: ") and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(("option", "value"), [("t", math.nan), ("t", -1.0), ("alpha", math.inf), ("alpha", 0.0)])
def test_losses_refuse_bad_options(option, value):
    from embspace.finetune.losses_gap import CUALoss, CUAXULoss

    for loss in (CUALoss, CUAXULoss):
        with pytest.raises(InputError, match=rf"^{option}: "):
            loss(**{option: value})
