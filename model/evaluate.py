"""``python -m model.evaluate --checkpoint runs/x/best.pt`` or ``--onnx models/mine/embedder.onnx``.

Scores the held-out split (query vs gallery) of the dataset named in the config: the
checkpoint's own config by default, or ``--config`` / dotted overrides such as
``data.dataset=market1501 data.root=/data/Market-1501-v15.09.15`` (required for an ONNX file,
which carries no dataset). An ONNX file is fed exactly as the service feeds it, so this
evaluates what will be served.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from model.config.train_config import load_config, to_dict
from model.engine.checkpoint import load_checkpoint, load_model_from_checkpoint
from model.engine.registries import read_dataset
from model.evaluation.embed_split import EmbedFn, evaluate_split, onnx_embedder, torch_embedder


def format_metrics(metrics: dict[str, float]) -> str:
    """Two columns, instance vs centroid, one row per metric, in percent."""
    names = sorted(
        {k.split("/", 1)[1] for k in metrics},
        key=lambda n: (n != "mAP", not n.startswith("rank"), len(n), n),
    )
    lines = [f"{'metric':<10}{'instance':>10}{'centroid':>10}"]
    for name in names:
        cells = []
        for level in ("instance", "centroid"):
            value = metrics.get(f"{level}/{name}")
            cells.append(f"{100 * value:>9.2f}%" if value is not None else f"{'-':>10}")
        lines.append(f"{name:<10}{''.join(cells)}")
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
        embed = torch_embedder(
            net,
            trained_cfg.data.input_size,
            device=args.device,
            batch_size=cfg.data.eval_batch_size,
            num_workers=cfg.data.num_workers,
        )
        what = f"checkpoint {args.checkpoint}"
    else:
        embed = onnx_embedder(args.onnx)
        what = f"ONNX model {args.onnx}"
    print(
        f"evaluating {what} on {split.name} ({split.protocol} protocol): "
        f"{len(split.query)} queries, {len(split.gallery)} gallery images, "
        f"{len({s.item for s in split.gallery if not s.is_distractor})} gallery items + "
        f"{sum(s.is_distractor for s in split.gallery)} distractors",
        flush=True,
    )
    started = time.perf_counter()
    metrics = evaluate_split(embed, split)
    print(format_metrics(metrics))
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"metrics": metrics, "data": to_dict(cfg.data)}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
