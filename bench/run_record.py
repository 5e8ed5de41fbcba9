"""What one bench run measured: the in-process baselines, and per store the service's windows
under each configuration — the inputs of the targets and of the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.inprocess_pipeline import PipelineThroughput
from bench.open_loop_step import OpenLoopStep
from bench.raw_ort import MeasuredBatch
from bench.service_window import ServiceWindow
from bench.single_image_latency import SingleImageLatency


@dataclass(frozen=True)
class InProcessBaselines:
    """Measured in the bench process while the batching-on service idles, just before the
    windows they are compared with. ``raw``, ``pipeline`` and ``single`` on the service's own
    session (``ort_threads``: its intra-op threads, resolved); ``ceiling``: raw ORT on a session
    opened for ORT alone (every usable core, threads spinning between calls), which may beat
    the service's session at what it does alone."""

    ort_threads: int
    raw: list[MeasuredBatch]
    ceiling: list[MeasuredBatch]
    pipeline: PipelineThroughput
    single: SingleImageLatency

    @property
    def best(self) -> MeasuredBatch:
        """The machine's raw ORT ceiling: the best batch of either session."""
        return max([*self.raw, *self.ceiling], key=lambda b: b.images_per_s)


@dataclass(frozen=True)
class OpenLoopRun:
    step: OpenLoopStep
    window: ServiceWindow


@dataclass(frozen=True)
class StoreRun:
    """One store's service measurements. Batching on (the service's defaults): ``saturation``
    (closed loop, its admission queue full), ``one_client``, ``enroll`` (``enroll_images`` per
    request), the open-loop ``baseline`` and ``overload`` steps. Then the comparison's client
    count on services that admit them all: batching on (``concurrent``), the released path
    (``off``) and one executor at batch size 1 (``batch1``). ``store``: what the report says
    about the batching-on service's store; ``stores``: the same per configuration (each had
    its own, thrown away afterwards). ``has_batching``: the service has the batching setting at all
    (``False``: a build from before issue 10, where on and off are the same path)."""

    store: dict[str, object]
    stores: dict[str, dict[str, object]]
    inproc: InProcessBaselines
    gallery_items: int
    has_batching: bool
    saturation: ServiceWindow
    concurrent: ServiceWindow
    one_client: ServiceWindow
    enroll: ServiceWindow
    enroll_images: int
    baseline: OpenLoopRun
    overload: OpenLoopRun
    off: ServiceWindow
    batch1: ServiceWindow
    timing_s: dict[str, float] = field(default_factory=dict)

    @property
    def saturation_rps(self) -> float:
        """The closed-loop search rate with the service's defaults, its admission queue full
        (the --clients comparison ran on another service, so it is not this one's rate)."""
        return self.saturation.stats.throughput_rps

    @property
    def enroll_images_per_s(self) -> float:
        return self.enroll.stats.throughput_rps * self.enroll_images
