"""Time many-to-many retrieval: N_img images, five captions each (MSCOCO's shape: 5,000 × 25,000 at the default).

    python benchmarks/many_to_many.py [--images 5000] [--captions-per-image 5] [--dim 512] [--device cpu]

Random unit rows (captions = their image + noise), ``embspace.measure(..., pair_ids=…, metrics="retrieval")``: the
two exact tiled passes of :mod:`embspace.kernels.grouped` (the first only over the tiles that hold a relevant pair)
and the per-modality families that retrieval does not need are left out. Prints the wall time, the host and load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import embspace

    rng = np.random.default_rng(0)
    image = rng.standard_normal((args.images, args.dim), dtype=np.float32)
    owner = np.repeat(np.arange(args.images), args.captions_per_image)
    text = image[owner] + rng.standard_normal((len(owner), args.dim), dtype=np.float32)
    start = time.perf_counter()
    report = embspace.measure(image=image, text=text, pair_ids=owner, metrics="retrieval", device=args.device)
    elapsed = time.perf_counter() - start
    print(f"{args.images:,} images × {len(owner):,} captions, D = {args.dim}, {args.device}: {elapsed:.1f} s "
          f"(recall@1 image->text {report['recall@1.image->text']:.4f}, text->image "
          f"{report['recall@1.text->image']:.4f}); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
