"""``python -m model.evaluate --checkpoint runs/x/best.pt`` or ``--onnx models/mine/embedder.onnx``.

Scores the held-out split (query vs gallery) of the dataset named in the config: the
checkpoint's own config by default, or ``--config`` / dotted overrides such as
``data.dataset=market1501 data.root=/data/Market-1501-v15.09.15`` (required for an ONNX file,
which carries no dataset). An ONNX file is fed exactly as the service feeds it, so this
evaluates what will be served. A checkpoint on the CPU is exported in memory and run by ONNX
Runtime too (``model.evaluation.exported_network``: 3-4x faster than eager torch), on CUDA it
runs in torch.

Besides instance and centroid mAP, CMC and Recall@K (K = 1, 2, 4, 8), it reports the NMI of
k-means over the held-out embeddings (k = number of items); ``--tsne PATH.png`` also draws
their t-SNE coloured by item, with the model's name and these metrics in the title.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from artifact.onnx_embedder import OnnxEmbedder
from model.config.train_config import load_config, to_dict
from model.engine.checkpoint import load_checkpoint, load_model_from_checkpoint
from model.engine.registries import read_dataset
from model.evaluation.embed_split import (
    NMI_KEY,
    EmbedFn,
    embed_split,
    onnx_embedder,
    score_split,
    strict,
)
from model.evaluation.exported_network import network_masked_embedder
from model.evaluation.tsne_plot import DEFAULT_MAX_ITEMS, write_tsne_plot


def format_metrics(metrics: dict[str, float]) -> str:
    """Two columns, instance vs centroid, one row per metric, in percent; then the NMI."""
    levels = ("instance", "centroid")
    names = sorted(
        {k.split("/", 1)[1] for k in metrics if k.split("/", 1)[0] in levels},
        key=lambda n: (n != "mAP", not n.startswith("rank"), not n.startswith("recall"), len(n), n),
    )
    lines = [f"{'metric':<10}{'instance':>10}{'centroid':>10}"]
    for name in names:
        cells = []
        for level in levels:
            value = metrics.get(f"{level}/{name}")
            cells.append(f"{100 * value:>9.2f}%" if value is not None else f"{'-':>10}")
        lines.append(f"{name:<10}{''.join(cells)}")
    if NMI_KEY in metrics:
        lines.append(f"NMI (k-means, k = items) {100 * metrics[NMI_KEY]:.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a .pt written by model.train")
    source.add_argument("--onnx", type=Path, help="an ONNX file written by model.export")
    parser.add_argument("--config", help="YAML config whose data section names the dataset")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=/data/m")
    parser.add_argument("--device", default="cpu", help="torch device for --checkpoint")
    parser.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument(
        "--tsne", type=Path, metavar="PATH.png",
        help="also write a t-SNE plot of the held-out embeddings coloured by item",
    )  # fmt: skip
    parser.add_argument(
        "--tsne-items", type=int, default=DEFAULT_MAX_ITEMS,
        help=f"items drawn in the t-SNE plot, those with the most images (default "
        f"{DEFAULT_MAX_ITEMS})",
    )  # fmt: skip
    parser.add_argument(
        "--no-nmi", action="store_true",
        help="skip the NMI (its k-means takes about a minute at Market-1501 size)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    base = None
    if args.checkpoint is not None and args.config is None:
        base = load_checkpoint(args.checkpoint)["config"]
    cfg = load_config(args.config, args.overrides, base=base)
    split = read_dataset(cfg.data)
    embed: EmbedFn
    if args.checkpoint is not None:
        net, trained_cfg = load_model_from_checkpoint(args.checkpoint)
        net.to(args.device)
        embed = strict(
            network_masked_embedder(
                net,
                trained_cfg.data.input_size,
                device=args.device,
                batch_size=cfg.data.eval_batch_size,
                num_workers=cfg.data.num_workers,
            )
        )
        what = f"checkpoint {args.checkpoint}"
        model_name = (
            f"{args.checkpoint} ({trained_cfg.model.name}, {trained_cfg.model.backbone}, "
            f"{trained_cfg.data.input_size[0]}x{trained_cfg.data.input_size[1]})"
        )
    else:
        embed = onnx_embedder(args.onnx)
        what = f"ONNX model {args.onnx}"
        spec = OnnxEmbedder(args.onnx, allow_gpu=False).spec
        model_name = f"{spec.model_name} {spec.model_version} ({args.onnx})"
    print(
        f"evaluating {what} on {split.name} ({split.protocol} protocol): "
        f"{len(split.query)} queries, {len(split.gallery)} gallery images, "
        f"{len({s.item for s in split.gallery if not s.is_distractor})} gallery items + "
        f"{sum(s.is_distractor for s in split.gallery)} distractors",
        flush=True,
    )
    started = time.perf_counter()
    embedded = embed_split(embed, split)
    embedded_s = time.perf_counter() - started
    metrics = score_split(embedded, split, clustering=not args.no_nmi)
    print(format_metrics(metrics))
    images = len(split.query) + len(split.gallery)
    print(
        f"({time.perf_counter() - started:.1f} s; embedding {embedded_s:.1f} s, "
        f"{images / max(embedded_s, 1e-9):.1f} images/s)"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"metrics": metrics, "data": to_dict(cfg.data)}, indent=2) + "\n"
        )
    if args.tsne is not None:
        shown = [not s.is_distractor for s in split.gallery]
        plot = write_tsne_plot(
            args.tsne,
            np.concatenate([embedded.query, embedded.gallery[np.array(shown, dtype=bool)]]),
            [s.item for s in split.query]
            + [s.item for s, k in zip(split.gallery, shown, strict=True) if k],
            [True] * len(split.query) + [False] * sum(shown),
            model_name=model_name,
            metrics=metrics,
            max_items=args.tsne_items,
        )
        print(
            f"t-SNE of {plot.points} held-out images of {len(plot.items)} items: {plot.path} "
            f"({plot.size[0]}x{plot.size[1]})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
