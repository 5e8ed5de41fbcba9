"""The in-process baselines the service is compared with, on the model's session as the service
opens it (``app.service_state.load_embedder``: ORT threads, spinning, GPU choice) and with its
pixel limit: raw ORT per batch size, the decode-while-infer pipeline at the best of them, one
image at a time; and raw ORT on a session of ORT's own best options, the machine's ceiling.
Blocking; the bench runs them while the service idles, just before the windows they are
compared with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.serving_session import load_embedder
from app.settings import Settings
from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from bench.inprocess_pipeline import PipelineThroughput, measure_pipeline
from bench.ort_throughput import BATCH_SIZES
from bench.process_cpu import usable_cores
from bench.raw_ort import MeasuredBatch, measure_raw_ort
from bench.single_image_latency import SingleImageLatency, measure_single_image


class InProcessBench:
    def __init__(self, model: Path, settings: Settings, bodies: Sequence[bytes]) -> None:
        self.settings = settings
        self.bodies = list(bodies)
        # Every raw batch size in one call, whatever the service's own largest batch is: the
        # model's best batch is the machine's ceiling.
        largest = max(settings.inference_batch, *BATCH_SIZES)
        self.embedder = load_embedder(
            settings.model_copy(update={"model_path": model, "inference_batch": largest})
        )
        self.ceiling_embedder = OnnxEmbedder(
            model,
            allow_gpu=settings.allow_gpu,
            intra_op_threads=usable_cores(),
            max_batch=largest,
            allow_spinning=True,
        )

    def throughput(
        self, *, ort_seconds: float, pipeline_seconds: float
    ) -> tuple[list[MeasuredBatch], list[MeasuredBatch], PipelineThroughput]:
        """Raw ORT at every batch size on the service's session and on ORT's own (the
        ceiling), then the pipeline (decode in the service's worker thread count) on the
        service's session at its best batch."""
        limit = self.settings.max_image_pixels
        arrays = [preprocess_bytes(b, self.embedder.spec, max_pixels=limit) for b in self.bodies]
        raw, ceiling = (
            measure_raw_ort(e, arrays, batch_sizes=BATCH_SIZES, seconds_per_size=ort_seconds)
            for e in (self.embedder, self.ceiling_embedder)
        )
        best = max(raw, key=lambda b: b.images_per_s)
        pipeline = measure_pipeline(
            self.embedder,
            self.bodies,
            batch_size=best.batch_size,
            decode_threads=self.settings.worker_threads,
            seconds=pipeline_seconds,
            max_pixels=limit,
        )
        return raw, ceiling, pipeline

    def single(self, *, seconds: float) -> SingleImageLatency:
        return measure_single_image(
            self.embedder, self.bodies, seconds=seconds, max_pixels=self.settings.max_image_pixels
        )
