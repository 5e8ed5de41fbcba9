"""Attribute rules without a store: RFC 7396 merges, the size count, filter terms, the spread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from store.embedding_codec import unit_vector
from store.errors import AttributeFilterError, AttributesInvalidError
from store.item_attributes import (
    AttributeFilter,
    attribute_terms,
    attributes_size,
    merge_patch,
)
from store.item_spread import item_spread
from store.records import ItemState

# RFC 7396 appendix A, the cases whose target and patch are both objects (attributes always
# are); target, patch, result as JSON text.
RFC_7396_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
    ('{"a":"foo"}', '{"a":null,"b":{"c":null}}', '{"b":{}}'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ('{"a":"b"}', '{"a":{"b":null}}', '{"a":{}}'),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patch_follows_the_rfc_examples(target: str, patch: str, result: str) -> None:
    before = json.loads(target)
    assert merge_patch(before, json.loads(patch)) == json.loads(result)
    assert before == json.loads(target)  # the target is not changed in place


@pytest.mark.parametrize("patch", [[1], "x", 3, None, {"a": float("inf")}, {"a": (1, 2)}])
def test_only_a_json_object_patches(patch: object) -> None:
    with pytest.raises(AttributesInvalidError):
        merge_patch({}, patch)  # type: ignore[arg-type]


def test_a_patch_nested_too_deeply_is_invalid_not_a_crash() -> None:
    deep: dict[str, object] = {}
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(AttributesInvalidError):
        merge_patch({}, deep)


def test_size_is_the_compact_sorted_utf8_encoding() -> None:
    attrs = {"b": "é", "a": [1, 2.5, True, None]}
    assert attributes_size(attrs) == len('{"a":[1,2.5,true,null],"b":"é"}'.encode())
    assert attributes_size({}) == 2


def test_terms_render_scalars_and_skip_the_rest() -> None:
    attrs = {
        "sku": "123",
        "n": 5,
        "x": 2.5,
        "f": 5.0,
        "ok": True,
        "no": False,
        "obj": {"a": 1},
        "arr": [1],
        "a=b": "c",  # a key no filter can name: no term, so never confused with a:b=c
        "empty": "",
    }
    assert attribute_terms(attrs) == {
        "sku=123",
        "n=5",
        "x=2.5",
        "f=5.0",
        "ok=true",
        "no=false",
        "empty=",
    }


def test_filters_match_the_rendered_scalar_and_and_together() -> None:
    item = {"sku": "123", "cat": "shoe", "n": 5, "ok": True, "url": "a:b", "obj": {"a": 1}}
    matching = [[], ["sku:123"], ["n:5"], ["sku:123", "cat:shoe"], ["ok:true"], ["url:a:b"]]
    for specs in matching:
        assert AttributeFilter.parse(specs).matches(item), specs
    failing = [["sku:124"], ["sku:123", "cat:hat"], ["n:5.0"], ["ok:True"], ["missing:x"]]
    failing += [["obj:{'a': 1}"], ["obj:" + json.dumps({"a": 1})], ["sku:"]]
    for specs in failing:
        assert not AttributeFilter.parse(specs).matches(item), specs
    assert AttributeFilter.parse(["n:5"]).matches({"n": "5"})  # a string "5" renders alike
    assert AttributeFilter.parse(["e:"]).matches({"e": ""})
    assert AttributeFilter.parse(["sku:1", "sku:1"]).terms == {"sku=1"}
    assert AttributeFilter.parse([]) == AttributeFilter()


@pytest.mark.parametrize("spec", ["nocolon", ":value", "bad key:1", "a/b:1", "k" * 65 + ":1"])
def test_malformed_filters_are_refused(spec: str) -> None:
    with pytest.raises(AttributeFilterError):
        AttributeFilter.parse([spec])
    assert issubclass(AttributeFilterError, ValueError)
    AttributeFilter.parse(["k" * 64 + ":1", "A.b-c_9:"])  # the longest key, every class


def test_spread_is_the_mean_cosine_of_the_images_to_the_centroid() -> None:
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(6, 16)).astype(np.float32) * rng.uniform(0.1, 9, (6, 1))
    total = embeddings.astype(np.float64).sum(axis=0)
    units = sum(unit_vector(e) for e in embeddings)
    state = ItemState("x", 6, total, unit_sum=units)
    centroid = total / np.linalg.norm(total)
    cosines = [e @ centroid / np.linalg.norm(e) for e in embeddings.astype(np.float64)]
    spread = item_spread(state)
    assert spread is not None and spread == pytest.approx(np.mean(cosines), rel=1e-12)
    one = ItemState("y", 1, total, unit_sum=unit_vector(total))
    assert item_spread(one) == pytest.approx(1.0)
    assert item_spread(ItemState("z", 0, np.zeros(16), unit_sum=np.zeros(16))) is None
    assert item_spread(ItemState("w", 2, total)) is None  # unit sum unknown
