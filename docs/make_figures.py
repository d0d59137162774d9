"""Write the figures of the bundled sample shown in ``docs/figures.md`` into ``docs/figures/``.

Run from the repository root::

    python docs/make_figures.py            # or: --out some/folder --dpi 90

The sample's training snapshots are measured once (``embspace.measure_trajectory``); every figure is drawn from
those reports (and, for the 2-D map, from the final embeddings), so the numbers in the figures are the ones
``embspace measure --sample --all-steps --out runs/`` writes.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import embspace
import embspace.plot
from embspace.trajectory import sample_snapshots

HERE = Path(__file__).resolve().parent
METRICS = "gap,alignment,cone,rmg,uniformity,spectrum,retrieval,histograms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "figures", help="folder for the PNG files")
    parser.add_argument("--dpi", type=int, default=80, help="resolution (modest: the files go into the repository)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    trajectory = embspace.measure_trajectory(sample_snapshots(), metrics=METRICS, name="mini-CLIP")
    first, last = trajectory.steps[0], trajectory.steps[-1]
    final = trajectory.at(last)
    figures = {
        "curves": embspace.plot.curves(trajectory, ["gap", "alignment", "uniformity", "cone", "rmg", "recall@1"]),
        "plane": embspace.plot.plane(trajectory),
        "spectrum": embspace.plot.spectrum({f"step {first}": trajectory.at(first), f"step {last}": final},
                                           normalize=True, marks=False),
        "histograms": embspace.plot.histograms(final),
        "map": embspace.plot.embedding_map(embspace.load_sample(), pairs=150),
        "before_after": embspace.plot.before_after(trajectory.at(first), final,
                                                   labels=(f"step {first}", f"step {last}")),
    }
    figures["structure_steps"] = structure_steps()
    for name, fig in figures.items():
        path = args.out / f"{name}.png"
        fig.savefig(path, dpi=args.dpi, bbox_inches="tight", metadata={"Software": None})
        print(f"{path}  {path.stat().st_size // 1024} KB")


def structure_steps(resamples: int = 50):
    """CKA and mutual-kNN between consecutive training snapshots of the sample (and first → last), per modality,
    with their intervals (:func:`embspace.compare_spaces`)."""
    from embspace.data import SAMPLE_PATH, sample_steps

    archive, steps = str(SAMPLE_PATH), sample_steps()
    dumps = {s: embspace.load(f"image={archive}:image_step{s}", f"text={archive}:text_step{s}") for s in steps}
    pairs = [*itertools.pairwise(steps), (steps[0], steps[-1])]
    comparisons = {f"{a}→{b}": embspace.compare_spaces(dumps[a], dumps[b], resamples=resamples) for a, b in pairs}
    return embspace.plot.space_structure(comparisons, title="structure kept between training snapshots (sample)")


if __name__ == "__main__":
    main()
