"""Service settings: read once, from environment variables prefixed ``RETRIEVAL_``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.suspect_images import DEFAULT_MARGIN, DEFAULT_MIN_Z, DEFAULT_QUARANTINE_MIN_IMAGES
from index.two_stage_fusion import DEFAULT_CANDIDATES

MiB = 1024 * 1024

# Where kept originals live (app/blob_backend_choice.py builds each).
BlobBackendKind = Literal["directory", "s3"]
# The centroid index kinds RETRIEVAL_INDEX names (app/index_choice.py builds each).
IndexKind = Literal["flat", "ivf", "milvus"]
# How the IVF stores rows beside the float32 ones (index/ivf_centroid_index.py ``Codes``).
IvfCodes = Literal["fp16", "sq8", "flat"]
# How search results are ordered (index/two_stage_fusion.py RankMode).
RankingKind = Literal["centroid", "two_stage"]
# URI schemes pymilvus connects to; any other URI must be a Milvus Lite ``.db`` file.
MILVUS_SCHEMES = ("http", "https", "tcp", "grpc", "unix")
# Milvus collection names: a letter or underscore, then letters, digits, underscores (Milvus
# allows 255 characters; the index appends a generation suffix such as ``__g12``).
_MILVUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
MILVUS_SQLITE_COLLECTION = "centroids"


class Settings(BaseSettings):
    """Every knob of the service. Field docs are the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="RETRIEVAL_", extra="ignore")

    model_path: Path = Field(
        Path("models/default/embedder.onnx"),
        description="ONNX embedder carrying the preprocessing contract in its metadata.",
    )
    data_dir: Path = Field(
        Path("data"), description="Embedded store (SQLite) and original-image blob directory."
    )
    redis_url: str | None = Field(
        None,
        description="Use the Redis store at this URL instead of SQLite (e.g. redis://h:6379/0).",
    )
    redis_namespace: str = Field("cr", description="Prefix of every Redis key of this service.")
    keep_blobs: bool = Field(
        True, description="Keep original image bytes so a new model can re-embed them."
    )
    blob_backend: BlobBackendKind = Field(
        "directory",
        description=(
            "Where kept originals live: `directory` (<data_dir>/blobs; with replicas, a volume "
            "they all mount: a compose named volume, a Kubernetes ReadWriteMany claim) or `s3` "
            "(an S3-compatible bucket: MinIO, AWS S3; the serve-s3 extra)."
        ),
    )
    s3_endpoint: str | None = Field(
        None,
        description="blob_backend=s3: the endpoint URL, e.g. http://minio:9000 or "
        "https://s3.eu-west-1.amazonaws.com.",
    )
    s3_bucket: str | None = Field(
        None, description="blob_backend=s3: the bucket (created on the first write if absent)."
    )
    s3_prefix: str = Field(
        "", description="blob_backend=s3: key prefix of every blob (e.g. `blobs/`)."
    )
    s3_region: str | None = Field(None, description="blob_backend=s3: the bucket's region.")
    s3_access_key: SecretStr | None = Field(
        None, description="blob_backend=s3: access key id (secret: never logged or shown)."
    )
    s3_secret_key: SecretStr | None = Field(
        None, description="blob_backend=s3: secret access key (secret: never logged or shown)."
    )
    s3_timeout_s: float = Field(
        1.0,
        gt=0,
        description=(
            "blob_backend=s3: connect and read timeout of every S3 call (seconds): a bucket "
            "that does not answer is a 503 within about this. An enrollment writes its blobs "
            "inside its store call: keep it below RETRIEVAL_STORE_DEADLINE_MS."
        ),
    )
    backup_dir: Path | None = Field(
        None,
        description=(
            "Root under which POST /admin/backup writes each backup (a new directory the "
            "request names); none: <data_dir>/backups. Another disk makes it a real copy."
        ),
    )
    reconcile_interval_s: float = Field(
        30.0,
        ge=0,
        description=(
            "Every this many seconds, compare the whole index with the store and correct any "
            "item that disagrees (each pass reads every item's sum); 0: never. Items whose "
            "write had an unknown outcome are re-read at once and every few seconds regardless."
        ),
    )
    change_feed_maxlen: int = Field(
        10_000,
        ge=100,
        description=(
            "Redis: change records kept for replicas to catch up from (each holds an item's "
            "two sums, 2 x D x 8 bytes: about 25 KB of Redis memory at D = 1280, 240 MiB for "
            "10,000); a replica further behind rebuilds its index from the store."
        ),
    )
    index_snapshot: bool = Field(
        True,
        description=(
            "Snapshot the index to index_snapshot_path, so a restart loads it and replays only "
            "the writes after it instead of reading every item from the store (not with the "
            "Milvus index, which keeps its own data)."
        ),
    )
    models_dir: Path | None = Field(
        None,
        description=(
            "Where `centroid-retrieval migrate` installs a new model's file, by its digest, for "
            "every replica to load when the migration switches; none: <data_dir>/models. With "
            "replicas, a directory they all mount."
        ),
    )
    migration_poll_s: float = Field(
        1.0,
        gt=0,
        description=(
            "How often the service reads the store's model-migration record (started, switched "
            "or rolled back by the migrate command or another replica) and follows it. With "
            "Redis the change feed also delivers each change of the record at once; the poll is "
            "the fallback."
        ),
    )
    reembed_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description=(
            "Share of the model's time a re-embedding run inside the service may take "
            "(POST /admin/migration): it waits between its items so searches and "
            "enrollments keep the rest."
        ),
    )
    index_snapshot_path: Path | None = Field(
        None,
        description=(
            "Where the index snapshot is written (one file, about items x D x 4 bytes); none: "
            "<data_dir>/index-snapshot.bin. Replicas may share it: any one's snapshot of the "
            "same store is valid for all."
        ),
    )
    index_snapshot_interval_s: float = Field(
        300.0,
        gt=0,
        description="Snapshot the index this often when it changed (and at a clean shutdown).",
    )
    index_snapshot_min_changes: int = Field(
        5_000,
        ge=1,
        description=(
            "Snapshot sooner once this many writes happened since the last one: keep it below "
            "change_feed_maxlen, so a restarting Redis replica still finds every record after "
            "its snapshot in the feed (SQLite's change log keeps 1,000,000 writes)."
        ),
    )
    max_replication_lag_s: float = Field(
        5.0,
        gt=0,
        description=(
            "Redis: /readyz turns 503 while this replica's index lags the store's change feed "
            "by more than this."
        ),
    )
    read_after_timeout_ms: int = Field(
        2000,
        ge=0,
        description=(
            "Longest a search with `after=<position>` waits for this replica to apply that "
            "write; past it 503 with Retry-After."
        ),
    )
    idempotency_ttl_s: float = Field(
        24 * 3600.0,
        gt=0,
        description=(
            "How long a write's answer is kept under its Idempotency-Key for retries (seconds)."
        ),
    )
    max_request_bytes: int = Field(32 * MiB, gt=0, description="Largest request body accepted.")
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="Largest width*height accepted, checked before decoding."
    )
    max_images_per_request: int = Field(64, gt=0, description="Most files in one enrollment.")
    max_attributes_bytes: int = Field(
        4096,
        gt=0,
        description=(
            "Largest item attributes, as compact JSON in bytes, after a merge (PATCH or the "
            "enrollment's `attributes` field); over it 422 and nothing stored."
        ),
    )
    default_k: int = Field(10, gt=0, description="Results returned by /search when k is not given.")
    max_k: int = Field(100, gt=0, description="Largest k accepted by /search.")
    worker_threads: int = Field(
        8,
        gt=0,
        description=(
            "Threads for decoding and index work (and, batching off, inference and the whole "
            "request)."
        ),
    )
    store_threads: int = Field(
        4,
        gt=0,
        description=(
            "Threads for store operations (commits, item reads, deletions, readiness), apart "
            "from the worker threads: a stalled store holds these and nothing else."
        ),
    )
    store_deadline_ms: int = Field(
        1500,
        gt=0,
        description=(
            "Longest a store operation may take, from its arrival through every round trip and "
            "retry; past it 503 (a write that had started: outcome unknown, the item re-read)."
        ),
    )
    store_write_deadline_ms: int = Field(
        4000,
        gt=0,
        description=(
            "Longest a store write may take (an enrollment's commit with its blobs' fsyncs, a "
            "PATCH, a deletion), from its arrival; past it 503 with the outcome unknown and the "
            "item re-read. Longer than the read deadline: an unknown outcome costs the client a "
            "retry and the service a reconcile, and a loaded disk's fsyncs take seconds."
        ),
    )
    store_queue: int = Field(
        16,
        ge=0,
        description=(
            "Store operations that may wait for one of the store threads; beyond them, 503 "
            "with Retry-After at once."
        ),
    )
    store_breaker_failures: int = Field(
        5,
        ge=0,
        description=(
            "Consecutive store failures (unreachable, past the deadline) after which store "
            "operations are refused at once (503) for the cooldown, then one probe is let "
            "through; 0: no circuit breaker."
        ),
    )
    store_breaker_cooldown_s: float = Field(
        2.0,
        gt=0,
        description=(
            "How long the open store circuit breaker refuses store operations before it lets "
            "one probe through (seconds; the refusals' Retry-After)."
        ),
    )
    index: IndexKind = Field(
        "flat",
        description=(
            "Centroid index: flat (exact FAISS, the default), ivf (approximate FAISS IVF, "
            "re-ranked exactly; for large galleries) or milvus (a Milvus collection, for "
            "galleries beyond one machine; needs milvus_uri)."
        ),
    )
    ivf_nprobe: int = Field(
        32, ge=1, description="ivf: lists probed per query (recall and search cost rise with it)."
    )
    ivf_refine: int = Field(
        4,
        ge=1,
        description="ivf: candidates fetched per result (k x this) before the exact re-rank.",
    )
    ivf_min_train_items: int = Field(
        20_000,
        ge=1,
        description="ivf: below this many items no IVF is trained and searches are exact.",
    )
    ivf_retrain_growth: float = Field(
        2.0,
        gt=1,
        description=(
            "ivf: retrain the coarse quantizer (aside, in the background) once the gallery has "
            "grown past this many times its size at the last training."
        ),
    )
    ivf_codes: IvfCodes = Field(
        "fp16",
        description=(
            "ivf: how the IVF lists store rows for candidate scoring: fp16, sq8 (smaller, loses "
            "near-duplicates) or flat (float32)."
        ),
    )
    milvus_uri: str | None = Field(
        None,
        description=(
            "milvus: the server (e.g. http://milvus:19530) or a Milvus Lite .db file. Milvus "
            "Lite allows one process per .db file: one replica only; several replicas need "
            "Milvus standalone or a cluster."
        ),
    )
    milvus_token: SecretStr | None = Field(
        None,
        description="milvus: the token (user:password or an API key); never logged or shown.",
    )
    milvus_collection: str | None = Field(
        None,
        description=(
            "milvus: the collection (an alias) holding the centroids; none: derived from "
            "redis_namespace (Redis store), 'centroids' (SQLite store)."
        ),
    )
    milvus_timeout_s: float = Field(
        1.0,
        gt=0,
        description=(
            "milvus: longest a request-path Milvus call may take (a search, a write's upsert, "
            "delete and read-backs; the client's reconnects), in seconds: within "
            "store_deadline_ms, so a Milvus that does not answer fails a request in time."
        ),
    )
    milvus_admin_timeout_s: float = Field(
        30.0,
        gt=0,
        description=(
            "milvus: longest a set-up or bulk Milvus call may take (create, describe and load "
            "the collection, create its index, flush, alias changes, rebuild batches, paged "
            "reads of every row), in seconds."
        ),
    )
    milvus_breaker_failures: int = Field(
        3,
        ge=1,
        description=(
            "milvus: failed Milvus calls in a row (searches, writes, the reconciler's retries) "
            "after which the index's breaker opens: searches and writes are refused 503 at "
            "once, writes before their store commit."
        ),
    )
    milvus_breaker_cooldown_s: float = Field(
        2.0,
        gt=0,
        description=(
            "milvus: how long the open breaker refuses before one call is let through to try "
            "Milvus again (seconds)."
        ),
    )
    ranking: RankingKind = Field(
        "two_stage",
        description=(
            "Result order: `two_stage` re-ranks the index's top `rerank_candidates` items by "
            "the fused score `alpha * centroid_score + (1 - alpha) * image_score` (what "
            "`python -m bench.answers` measured best on real photos); `centroid` keeps the "
            "centroid order. Both answer every evidence field."
        ),
    )
    rerank_candidates: int = Field(
        DEFAULT_CANDIDATES,
        ge=1,
        le=1000,
        description=(
            "M: the items the centroid index proposes for the second stage (at least k are "
            "taken); their images give the evidence and, in `two_stage`, the order."
        ),
    )
    image_embeddings_budget_mb: float = Field(
        1024.0,
        ge=0,
        description=(
            "Per-image embeddings kept in memory (float16) for the second stage up to this "
            "many MiB; over it (and with the `milvus` index) the candidates' images are read "
            "from the store, one round trip per search; 0: always from the store. `/info` "
            "states the mode (`memory`, `store`, `warming`) and bytes."
        ),
    )
    suspect_margin: float = Field(
        DEFAULT_MARGIN,
        ge=-1,
        le=2,
        description=(
            "Quality gate: an enrolled image is suspect when its cosine to another item's "
            "centroid exceeds its cosine to its own item's centroid formed without it by more "
            "than this (measured for the default model by `python -m bench.quality_gate`, "
            "which sweeps it; a retrained model may want another)."
        ),
    )
    suspect_min_z: float = Field(
        DEFAULT_MIN_Z,
        le=0,
        description=(
            "Quality gate: an enrolled image is also suspect when its cosine to its item's "
            "centroid formed without it sits this many item widths below what the item's "
            "spread predicts (z < this; `index/suspect_images.py`)."
        ),
    )
    quarantine_suspects: bool = Field(
        False,
        description=(
            "Quality gate: hold the images an enrollment flags out of their item's centroid, "
            "spread, evidence and queries (kept, listed, and released by `PATCH "
            "/items/{item_id}/images/{image_id}`) instead of only flagging them."
        ),
    )
    quarantine_min_images: int = Field(
        DEFAULT_QUARANTINE_MIN_IMAGES,
        ge=1,
        description=(
            "Quality gate: an enrollment quarantines a flagged image only when its item holds "
            "at least this many other counted images (judged against fewer, a genuine view is "
            "flagged about as often as a mislabel); it is flagged either way."
        ),
    )
    recall_sample_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description=(
            "Fraction of searches on an approximate index (ivf) whose recall@10 is measured "
            "against an exact search, in the background; 0: never. Flat and milvus are exact."
        ),
    )
    recall_sample_queue: int = Field(
        8,
        ge=1,
        description=(
            "Sampled searches waiting for the recall thread; beyond it a sample is dropped "
            "(and counted), never waited for."
        ),
    )
    quality_sample_images: int = Field(
        2000,
        ge=1,
        description=(
            "GET /quality: the most gallery images queried leave-one-out (drawn uniformly, "
            "with a fixed seed, among the images of items holding two or more)."
        ),
    )
    quality_cache_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "GET /quality: an answer younger than this is served as is; an older one is served "
            "while the next is computed in the background. Writes do not invalidate it."
        ),
    )
    inference_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads (0: its default, one per core)."
    )
    inference_batch: int = Field(32, gt=0, description="Largest batch sent to the model at once.")
    batching: bool = Field(
        True,
        description=(
            "Batch concurrent requests' images into one model call (one inference thread); "
            "false: each worker thread calls the model itself."
        ),
    )
    batch_max_delay_us: int = Field(
        1000,
        ge=0,
        description=(
            "Longest a partial batch waits for requests still being decoded before it runs "
            "(microseconds)."
        ),
    )
    admission_queue: int = Field(
        4,
        gt=0,
        description=(
            "Most searches and enrollments admitted and waiting for inference; beyond it, 503 "
            "with Retry-After at once."
        ),
    )
    queue_timeout_ms: int = Field(
        2000,
        gt=0,
        description=(
            "A request that waited longer than this for inference (its own decoding not "
            "counted) is dropped before it (503)."
        ),
    )
    allow_gpu: bool = Field(True, description="Use CUDA when onnxruntime-gpu sees a GPU.")
    log_level: str = Field("info", description="Python log level.")
    api_keys: str = Field(
        "",
        description=(
            "API key hash lines (`centroid-retrieval make-key` prints them), separated by `;` "
            "or newlines. None here or in the keys file: no key needed (see allow_anonymous)."
        ),
    )
    api_keys_file: Path | None = Field(
        None,
        description="A file of API key hash lines, one per line (# comments), added to api_keys.",
    )
    allow_anonymous: bool = Field(
        False,
        description=(
            "With no keys configured, answer requests without a key on every interface; false: "
            "only on loopback connections (serve refuses a non-loopback --host). Not allowed "
            "with keys."
        ),
    )
    metrics_requires_key: bool = Field(
        False, description="/metrics needs a valid API key (any scope) like the data routes."
    )
    cors_origins: str = Field(
        "",
        description=(
            "Comma-separated origins allowed to call the API from a browser "
            "(e.g. https://shop.example); empty: no CORS headers at all."
        ),
    )
    rate_limit_per_second: float = Field(
        0.0,
        ge=0,
        description=(
            "Requests per second each API key (anonymous: all together) may make to the data "
            "routes, per replica; beyond it 429 with Retry-After. 0: no limit."
        ),
    )
    rate_limit_burst: int = Field(
        0,
        ge=0,
        description=(
            "Requests a key may make at once before the rate applies (token bucket size); "
            "0: one second's worth (at least 1)."
        ),
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Longest a connection may take to send a request's headers, from its first byte "
            "(or from the connection's opening); then it is closed without an answer."
        ),
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "Longest a request body may go without advancing by 1 KiB (or to its end) while "
            "the service is reading it; then 408 and the connection is closed."
        ),
    )
    idle_timeout_s: float = Field(
        5.0, gt=0, description="Longest a keep-alive connection may stay idle between requests."
    )
    max_connections: int = Field(
        4096,
        gt=0,
        description=(
            "Most open client connections; beyond it new ones are closed at once. Kept below "
            "the open-file limit (raised to its hard limit at start) whatever is set."
        ),
    )
    max_bytes_in_flight: int = Field(
        256 * MiB,
        gt=0,
        description=(
            "Most request body bytes (by Content-Length, or as chunks arrive) being received "
            "or processed at once; beyond it a request waits up to 1 s, then 503 with "
            "Retry-After."
        ),
    )

    @field_validator(
        "redis_url",
        "api_keys_file",
        "backup_dir",
        "index_snapshot_path",
        "models_dir",
        "milvus_uri",
        "milvus_token",
        "milvus_collection",
        "s3_endpoint",
        "s3_bucket",
        "s3_region",
        "s3_access_key",
        "s3_secret_key",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri_form(cls, value: str | None) -> str | None:
        if value is not None and not (
            urlsplit(value).scheme.lower() in MILVUS_SCHEMES or value.endswith(".db")
        ):
            raise ValueError(
                f"milvus_uri must be a {'/'.join(MILVUS_SCHEMES)} URL or a Milvus Lite .db file"
            )
        return value

    @field_validator("milvus_collection")
    @classmethod
    def _milvus_collection_form(cls, value: str | None) -> str | None:
        if value is not None and not _MILVUS_NAME.fullmatch(value):
            raise ValueError(
                "milvus_collection must be a letter or underscore, then letters, digits or "
                "underscores (at most 200 characters)"
            )
        return value

    @model_validator(mode="after")
    def _s3_needs_an_endpoint_and_a_bucket(self) -> Settings:
        if self.blob_backend == "s3" and (self.s3_endpoint is None or self.s3_bucket is None):
            raise ValueError(
                "blob_backend=s3 needs RETRIEVAL_S3_ENDPOINT (e.g. http://minio:9000) and "
                "RETRIEVAL_S3_BUCKET"
            )
        return self

    @model_validator(mode="after")
    def _milvus_needs_a_uri(self) -> Settings:
        if self.index == "milvus" and self.milvus_uri is None:
            raise ValueError(
                "index=milvus needs RETRIEVAL_MILVUS_URI (a Milvus server such as "
                "http://milvus:19530, or a Milvus Lite .db file)"
            )
        return self

    @model_validator(mode="after")
    def _default_k_within_max_k(self) -> Settings:
        # /search's k defaults to default_k and is validated against max_k: a default above
        # the maximum would reject every search that leaves k out.
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must not exceed max_k ({self.max_k})")
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "store.sqlite3"

    @property
    def snapshot_path(self) -> Path:
        return self.index_snapshot_path or self.data_dir / "index-snapshot.bin"

    @property
    def model_install_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def milvus_collection_name(self) -> str:
        """``milvus_collection``, else one per Redis namespace (each UTF-8 byte outside
        ``[A-Za-z0-9]`` spelled ``_xx`` in hex, so distinct namespaces never share one), else
        ``centroids`` for the single-process SQLite store."""
        if self.milvus_collection is not None:
            return self.milvus_collection
        if self.redis_url is None:
            return MILVUS_SQLITE_COLLECTION
        spelled = "".join(
            chr(b) if chr(b).isascii() and chr(b).isalnum() else f"_{b:02x}"
            for b in self.redis_namespace.encode()
        )
        return f"{MILVUS_SQLITE_COLLECTION}_{spelled}"
