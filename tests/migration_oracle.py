"""What a model migration's shadow store must hold, checked from scratch: every item of the
primary with the same image ids (in order) and attributes, embeddings of the new model (the
tiny model's reference arithmetic on the kept originals, ``tests/tiny_artifact.py``) and sums
of those. Shared by the command's tests and the service's."""

from __future__ import annotations

import numpy as np

from artifact.image_decode import preprocess_bytes
from artifact.preprocess_spec import PreprocessSpec
from store.blob_backend import BlobBackend
from store.records import ModelIdentity
from store.store import Store
from tests.tiny_artifact import reference_embeddings


def assert_shadow_is_a_fresh_reembed(
    primary: Store,
    shadow: Store,
    blobs: BlobBackend,
    spec: PreprocessSpec,
    seed: int,
) -> int:
    """Returns the items checked."""
    assert shadow.get_model_identity() == ModelIdentity(
        spec.model_name, spec.model_version, spec.embedding_dim
    )
    summaries, _ = primary.list_items(10_000, None)
    assert shadow.counts() == primary.counts()
    for summary in summaries:
        want, got = primary.get_item(summary.item_id), shadow.get_item(summary.item_id)
        assert got == want
        images = shadow.item_images([summary.item_id])[summary.item_id]
        originals = [blobs.get(i.content_hash) for i in images]
        batch = np.stack([preprocess_bytes(d, spec) for d in originals if d is not None])
        expected = reference_embeddings(batch, seed=seed)
        np.testing.assert_allclose(
            np.stack([i.embedding for i in images]), expected, rtol=1e-4, atol=1e-4
        )
        state = shadow.get_item_state(summary.item_id)
        assert state is not None
        counted = [n for n, i in enumerate(images) if not i.quarantined]  # the sums' images
        assert state.count == len(counted)
        np.testing.assert_allclose(state.embedding_sum, expected[counted].sum(axis=0), atol=1e-3)
    return len(summaries)
