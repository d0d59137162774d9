"""Fine-tune a whole CLIP model with geodesic multimodal mixup (m²-mix) and check the gap before and after.

No weights are downloaded: the model is a tiny, randomly initialised CLIP — an ``open_clip.CLIP`` (a 2-layer ViT on
32×32 images and a 2-layer text transformer) or a Hugging Face ``transformers.CLIPModel`` of the same shape, built
from config dicts — and the data are synthetic image–caption pairs of a few classes (a class-coloured pattern plus
noise; a caption of class-specific token ids). The loss module replaces open_clip's ``ClipLoss`` in the training step
unchanged (see :mod:`embspace.finetune.integration`)::

    python examples/finetune_clip_model.py --backend open_clip --loss m2mix --steps 60
    python examples/finetune_clip_model.py --backend hf --loss m2mix --steps 60

Needs ``pip install open-clip-torch`` (and a torchvision that imports against the installed torch) for open_clip,
``pip install transformers`` for Hugging Face.
"""

from __future__ import annotations

import argparse

import torch

import embspace
from embspace.finetune import make_loss
from embspace.finetune.integration import HuggingFaceClip, open_clip_step

VISION_CFG = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 2.0}
TEXT_CFG = {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 2, "layers": 2}


def tiny_clip(embed_dim: int = 32, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised open_clip CLIP small enough to train on a CPU in seconds."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(embed_dim=embed_dim, vision_cfg=VISION_CFG, text_cfg=TEXT_CFG, output_dict=True)


def tiny_hf_clip(embed_dim: int = 32, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised Hugging Face CLIPModel of the same size, behind open_clip's interface."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = {"vocab_size": TEXT_CFG["vocab_size"], "hidden_size": TEXT_CFG["width"], "intermediate_size": 128,
            "num_hidden_layers": TEXT_CFG["layers"], "num_attention_heads": TEXT_CFG["heads"],
            "max_position_embeddings": TEXT_CFG["context_length"], "bos_token_id": 1,
            "eos_token_id": TEXT_CFG["vocab_size"] - 1, "pad_token_id": 0}
    vision = {"image_size": VISION_CFG["image_size"], "patch_size": VISION_CFG["patch_size"],
              "hidden_size": VISION_CFG["width"], "intermediate_size": 128, "num_hidden_layers": VISION_CFG["layers"],
              "num_attention_heads": VISION_CFG["width"] // VISION_CFG["head_width"]}
    return HuggingFaceClip(CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=embed_dim)))


BACKENDS = {"open_clip": tiny_clip, "hf": tiny_hf_clip}


def synthetic_pairs(n: int, classes: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (n, 3, 32, 32), token ids (n, 16) and labels (n,): each class has a colour, a stripe frequency and
    a set of caption tokens; every pair gets its own noise and word order."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    colours = torch.rand(classes, 3, 1, 1, generator=g)  # (C, 3, 1, 1)
    grid = torch.linspace(0, 6.283, 32)
    stripes = torch.stack([torch.sin((k + 1) * grid)[None, :].expand(32, 32) for k in range(classes)])  # (C, 32, 32)
    images = colours[labels] + 0.5 * stripes[labels][:, None] + 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    vocab = torch.randint(3, TEXT_CFG["vocab_size"] - 1, (classes, 6), generator=g)  # 6 words per class
    texts = torch.zeros(n, TEXT_CFG["context_length"], dtype=torch.long)
    for i, label in enumerate(labels.tolist()):
        words = vocab[label][torch.randperm(6, generator=g)[:5]]
        noise = torch.randint(3, TEXT_CFG["vocab_size"] - 1, (2,), generator=g)
        texts[i, 0] = 1  # start token
        texts[i, 1:8] = torch.cat([words, noise])
        texts[i, 8] = TEXT_CFG["vocab_size"] - 1  # end token: both models pool at it (the largest id)
    return images, texts, labels


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, texts: torch.Tensor) -> dict[str, torch.Tensor]:
    model.eval()
    out = model(images, texts)
    return {"image": out["image_features"], "text": out["text_features"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="open_clip", help="open_clip or hf")
    parser.add_argument("--loss", default="m2mix", help="clip, m2mix, m3mix, cua, cuaxu, latent")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = BACKENDS[args.backend](seed=args.seed)
    train_images, train_texts, _ = synthetic_pairs(1024, seed=args.seed)
    eval_images, eval_texts, _ = synthetic_pairs(256, seed=args.seed + 1)
    loss = make_loss(args.loss, seed=args.seed)  # e.g. M2MixLoss: the drop-in for open_clip's ClipLoss
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    before_data = features(model, eval_images, eval_texts)
    before = embspace.measure(before_data, metrics="gap,alignment,uniformity,retrieval,cone")

    order = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        rows = torch.randint(len(train_images), (args.batch_size,), generator=order)
        terms = open_clip_step(model, loss, train_images[rows], train_texts[rows], optimizer)
        if step % 10 == 0 or step == args.steps - 1:
            shown = "  ".join(f"{k}={v:.4f}" for k, v in terms.items())
            print(f"step {step:4d}  {shown}")

    after_data = features(model, eval_images, eval_texts)
    after = embspace.measure(after_data, metrics="gap,alignment,uniformity,retrieval,cone")
    comparison = embspace.compare(before, after, data_before=before_data, data_after=after_data, resamples=500)
    print(comparison.table())


if __name__ == "__main__":
    main()
