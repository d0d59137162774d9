"""The trainer on cached features: it closes a planted gap, resumes bit for bit, and writes what it promises."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from embspace.errors import InputError
from embspace.finetune import FitConfig, build_model, fit, make_loss, split_pairs
from embspace.finetune.checkpoint import load_checkpoint
from embspace.finetune.data import as_pairs
from embspace.finetune.objectives import loss_options

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"eval_metrics": "gap,alignment,uniformity,retrieval"}


def planted(n: int = 400, d: int = 16, seed: int = 0, d_text: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sharing a latent z, the two modalities pushed apart by ±3 along one axis (a planted gap)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    shift = np.zeros(d)
    shift[0] = 3.0
    x = z + shift + 0.2 * rng.normal(size=(n, d))
    y = z - shift + 0.2 * rng.normal(size=(n, d))
    if d_text is not None:
        y = y @ rng.normal(size=(d, d_text))
    return x.astype(np.float32), y.astype(np.float32)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("adapter, loss", [(True, "cua"), (False, "clip")])
def test_training_closes_a_planted_gap(adapter, loss):
    x, y = planted()
    config = FitConfig(epochs=15, batch_size=64, lr=1e-2, adapter=adapter, dim=16, **QUICK)
    result = fit((x[:320], y[:320]), (x[320:], y[320:]), loss=loss, config=config, resamples=100)
    gaps = [r["gap"] for r in result.reports]
    assert gaps[-1] < 0.5 * gaps[0]
    assert result.after["recall@1.image->text"] > 0.9
    entry = result.comparison.significance.metrics["gap"]
    assert entry.significant and entry.ci[1] < 0


def test_adapters_start_as_the_identity_and_heads_may_differ_in_dim():
    x, y = planted(60, 8)
    result = fit((x[:40], y[:40]), (x[40:], y[40:]), config=FitConfig(epochs=1, adapter=True, **QUICK),
                 resamples=20)
    unit = x[40:] / np.linalg.norm(x[40:], axis=1, keepdims=True)
    np.testing.assert_allclose(result.before_image, unit, atol=1e-6)
    x, y = planted(60, 8, d_text=5)
    result = fit({"photo": x[:40], "caption": y[:40]}, {"photo": x[40:], "caption": y[40:]},
                 config=FitConfig(epochs=2, dim=4, head="mlp", hidden=16, **QUICK), resamples=20)
    assert result.image.shape == (20, 4) and result.names == ("photo", "caption")
    assert "cone.photo" in result.comparison.significance.metrics


@pytest.mark.parametrize("loss", ["m3mix", "latent"])
def test_interrupted_run_resumes_to_bitwise_identical_weights(tmp_path, loss):
    """Raise mid-epoch; resume from the last epoch checkpoint; compare with a run never interrupted."""
    x, y = planted(200, 8)
    train, evaluation = (x[:160], y[:160]), (x[160:], y[160:])
    config = FitConfig(loss=loss, epochs=4, batch_size=32, dim=8, head="mlp", hidden=16, **QUICK)
    whole = fit(train, evaluation, config=config, out=tmp_path / "whole", resamples=20)

    class Stop(Exception):
        pass

    def interrupt(epoch: int, step: int) -> None:
        if step == 13:  # epoch 2 (0-based) of 5 steps each: mid-epoch
            raise Stop

    with pytest.raises(Stop):
        fit(train, evaluation, config=config, out=tmp_path / "cut", on_step=interrupt, resamples=20)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 2
    resumed = fit(train, evaluation, config=config, out=tmp_path / "cut", resume=True, resamples=20)
    assert_bitwise_equal(weights(whole.model), weights(resumed.model))
    assert whole.history == resumed.history
    assert np.array_equal(whole.image, resumed.image)
    assert [r.metrics for r in whole.reports] == [r.metrics for r in resumed.reports]


def test_killed_process_resumes_to_bitwise_identical_weights(tmp_path):
    """SIGKILL a real training process at a step inside epoch 3; resume in this process."""
    x, y = planted(200, 8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    config = dict(loss="m2mix", epochs=4, batch_size=32, dim=8, **QUICK)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from embspace.finetune import FitConfig, fit
        x, y = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'y.npy')!r})
        def kill(epoch, step):
            if step == 12:
                os.kill(os.getpid(), signal.SIGKILL)
        fit((x[:160], y[:160]), (x[160:], y[160:]), config=FitConfig(**{config!r}), out={str(tmp_path / 'run')!r},
            on_step=kill, resamples=20)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no half-written file became visible
    resumed = fit((x[:160], y[:160]), (x[160:], y[160:]), config=FitConfig(**config), out=tmp_path / "run",
                  resume=True, resamples=20)
    whole = fit((x[:160], y[:160]), (x[160:], y[160:]), config=FitConfig(**config), resamples=20)
    assert_bitwise_equal(weights(whole.model), weights(resumed.model))


def test_outputs_written_to_the_folder(tmp_path):
    x, y = planted(100, 8)
    result = fit((x[:80], y[:80]), (x[80:], y[80:]), config=FitConfig(epochs=2, dim=8, **QUICK),
                 out=tmp_path / "run", resamples=50)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {"config.json", "epoch_0.json", "epoch_1.json", "epoch_2.json", "checkpoint.pt",
                     "eval_before.npy", "eval_adapted.npy", "comparison.json", "history.json", "trajectory.json"}
    stack = np.load(tmp_path / "run" / "eval_adapted.npy")
    assert stack.shape == (2, 20, 8) and stack.dtype == np.float32
    np.testing.assert_array_equal(stack[0], result.image)
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert comparison["significance"]["resamples"] == 50
    assert json.loads((tmp_path / "run" / "epoch_2.json").read_text())["metrics"]["gap"] == result.after["gap"]
    from embspace.trajectory import Trajectory

    trajectory = Trajectory.from_json(tmp_path / "run" / "trajectory.json")
    assert trajectory.steps == [0, 1, 2] and trajectory.unit == "epoch"
    assert trajectory.values("gap")[-1] == result.after["gap"]
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert {"model", "optimizer", "rng", "epoch", "step", "config", "fingerprint"} <= set(state)
    assert set(state["rng"]) == {"shuffle", "augment", "lambda"}


def test_a_folder_with_a_run_is_not_overwritten_and_other_settings_do_not_resume(tmp_path):
    x, y = planted(60, 8)
    train, evaluation = (x[:40], y[:40]), (x[40:], y[40:])
    fit(train, evaluation, config=FitConfig(epochs=1, dim=4, **QUICK), out=tmp_path / "run", resamples=20)
    with pytest.raises(InputError, match="resume=True"):
        fit(train, evaluation, config=FitConfig(epochs=1, dim=4, **QUICK), out=tmp_path / "run", resamples=20)
    with pytest.raises(ValueError, match="other data or settings"):
        fit(train, evaluation, config=FitConfig(epochs=2, dim=4, lr=0.1, **QUICK), out=tmp_path / "run",
            resume=True, resamples=20)


def test_seed_controls_everything_and_global_rng_is_untouched():
    x, y = planted(80, 8)
    config = FitConfig(loss="m2mix", epochs=2, dim=4, batch_size=16, **QUICK)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = fit((x[:60], y[:60]), (x[60:], y[60:]), config=config, resamples=20)
    assert torch.equal(torch.get_rng_state(), state)
    b = fit((x[:60], y[:60]), (x[60:], y[60:]), config=config, resamples=20)
    c = fit((x[:60], y[:60]), (x[60:], y[60:]), config=config.replace(seed=1), resamples=20)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)


def test_bad_configs_and_data_are_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        FitConfig(loss="mixup")
    with pytest.raises(ValueError, match="no option"):
        make_loss("m2mix", {"wieght": 0.1})
    assert "weight" in loss_options("m2mix") and "generator" not in loss_options("m2mix")
    with pytest.raises(ValueError, match="same one"):
        build_model(8, 5, FitConfig(adapter=True))
    x, y = planted(40, 8)
    with pytest.raises(InputError, match="dimensions"):
        fit((x, y), (x[:, :4], y[:, :4]), config=FitConfig(epochs=1))
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        as_pairs((bad, y))
    train, evaluation = split_pairs(as_pairs((x, y)), 0.25, seed=0)
    assert (train.n, evaluation.n) == (30, 10)


def test_a_method_is_compared_with_the_clip_run_of_the_same_seed(tmp_path):
    """baseline="train" trains the clip run of the same config and seed; a finished clip folder gives the same."""
    from tests import reference as ref

    x, y = planted(120, 8)
    train, evaluation = (x[:90], y[:90]), (x[90:], y[90:])
    config = FitConfig(epochs=2, dim=8, batch_size=32, **QUICK)
    result = fit(train, evaluation, loss="m2mix", config=config, out=tmp_path / "run", baseline="train",
                 resamples=50)
    clip = fit(train, evaluation, loss="clip", config=config, out=tmp_path / "clip", resamples=50)
    base = np.load(tmp_path / "run" / "baseline_clip" / "eval_adapted.npy")
    np.testing.assert_array_equal(base[0], clip.image)  # the same seed: the same clip run, bit for bit
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "baseline_clip" / "eval_before.npy"),
                                  np.load(tmp_path / "run" / "eval_before.npy"))  # and the method's initial towers
    assert json.loads((tmp_path / "run" / "baseline_clip" / "config.json").read_text())["loss"] == "clip"
    comparison = result.baseline_comparison
    assert comparison.before.metrics == clip.after.metrics and comparison.after is result.after
    entry = comparison.significance.metrics["gap"]
    assert entry.data_before == pytest.approx(ref.gap(clip.image, clip.text), abs=1e-5)
    assert entry.data_after == pytest.approx(ref.gap(result.image, result.text), abs=1e-5)
    assert not any("holds different data" in w for w in comparison.warnings)
    written = json.loads((tmp_path / "run" / "comparison_baseline.json").read_text())
    assert written["baseline"] == str(tmp_path / "run" / "baseline_clip")
    assert written["significance"]["metrics"]["gap"]["change"] == pytest.approx(entry.change)
    given = fit(train, evaluation, loss="m2mix", config=config, baseline=tmp_path / "clip", resamples=50)
    assert given.baseline_comparison.significance.metrics["gap"].ci == entry.ci
    assert given.baseline_out == tmp_path / "clip"
    # no baseline for clip itself, nor without one asked for
    plain = fit(train, evaluation, loss="clip", config=config, baseline="train", resamples=20)
    assert plain.baseline_comparison is None
    assert fit(train, evaluation, loss="cua", config=config, resamples=20).baseline_comparison is None


def test_a_baseline_folder_of_another_run_is_refused(tmp_path):
    x, y = planted(80, 8)
    train, evaluation = (x[:60], y[:60]), (x[60:], y[60:])
    config = FitConfig(epochs=1, dim=4, **QUICK)
    fit(train, evaluation, loss="clip", config=config.replace(seed=3), out=tmp_path / "seed3", resamples=20)
    fit(train, evaluation, loss="cua", config=config, out=tmp_path / "cua", resamples=20)
    fit(train, evaluation, loss="clip", config=config, out=tmp_path / "clip", resamples=20)
    cases = {"seed3": "seed=3", "cua": "is a cua run", "missing": "not a finished fine-tuning run"}
    for folder, message in cases.items():
        with pytest.raises(InputError, match=message):
            fit(train, evaluation, loss="m2mix", config=config, baseline=tmp_path / folder)
    with pytest.raises(InputError, match="other training or eval data"):
        fit((x[:60], y[:60]), (x[60:], y[60:] + 1), loss="m2mix", config=config, baseline=tmp_path / "clip")
    with pytest.raises(InputError, match="clip already"):
        fit(train, evaluation, loss="clip", config=config, baseline=tmp_path / "clip")
