"""The model card codec: one reading and writing for image and text towers, old files kept.

``old_cards.json`` holds metadata_props exactly as siamese wrote them before the codec was
unified (image and text cards, a format-1 card, pair records, an unknown key): they must read
back and re-encode key for key, byte for byte, in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siamese.contracts.model_card import (
    KINDS,
    MODEL_FORMAT_VERSION,
    ModelCard,
    ModelInfo,
    TextModelInfo,
)
from siamese.contracts.pair_card import ROLES, PairInfo, pair_fingerprint
from siamese.contracts.spec import INTERPOLATIONS, RESIZE_RULES, InputSpec
from siamese.core.errors import ModelError

OLD_CARDS = json.loads((Path(__file__).with_name("old_cards.json")).read_text())
SOURCE = "models/old model.onnx"


@pytest.mark.parametrize(
    "name", ["image_pair_gallery_side", "image_format1", "text_pair_query_side"]
)
def test_cards_written_before_read_back_and_reencode_byte_for_byte(name: str) -> None:
    written = [tuple(item) for item in OLD_CARDS[name]]
    card = ModelCard.from_metadata(dict(written), SOURCE)
    assert list(card.to_metadata().items()) == written
    assert type(card).from_metadata(dict(written), SOURCE) == card


def test_old_cards_mean_what_they_said() -> None:
    image = ModelCard.from_metadata(dict(OLD_CARDS["image_pair_gallery_side"]), SOURCE)
    assert isinstance(image, ModelInfo) and image.input_dtype == "uint8"
    assert image.input_spec == InputSpec.create(
        16, 3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize="fit-crop"
    )
    assert image.tower["pretrained"] == "timm/x" and image.embedding_dim == 8
    assert image.pair is not None and (image.pair.role, image.pair.partner_kind) == (
        "gallery",
        "text",
    )
    old = ModelCard.from_metadata(dict(OLD_CARDS["image_format1"]), SOURCE)
    assert isinstance(old, ModelInfo) and (old.format_version, old.input_dtype) == (1, "float32")
    assert old.pair is None and old.normalized is False
    text = ModelCard.from_metadata(dict(OLD_CARDS["text_pair_query_side"]), SOURCE)
    assert isinstance(text, TextModelInfo) and text.max_length == 16
    assert text.extra == {"note": "kept"} and text.precision == "fp16"
    assert text.pair is not None and text.pair.fingerprint == image.pair.fingerprint


def test_an_exported_file_holds_exactly_its_card(tiny_model_path: Path) -> None:
    props = [(p.key, p.value) for p in onnx.load(str(tiny_model_path)).metadata_props]
    card = ModelInfo.from_metadata(dict(props), str(tiny_model_path))
    assert list(card.to_metadata().items()) == props


# ---------------------------------------------------------------- any valid card round-trips
_words = st.text(max_size=16)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_words, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _specs(draw: st.DrawFn) -> InputSpec:
    channels = draw(st.sampled_from((1, 3)))
    return InputSpec(
        height=draw(st.integers(8, 4096)),
        width=draw(st.integers(8, 4096)),
        channels=channels,
        mean=tuple(draw(st.lists(st.floats(0, 1), min_size=channels, max_size=channels))),
        std=tuple(draw(st.lists(st.floats(1e-3, 10), min_size=channels, max_size=channels))),
        resize=draw(st.sampled_from(RESIZE_RULES)),
        interpolation=draw(st.sampled_from(INTERPOLATIONS)),
    )


@st.composite
def _pairs(draw: st.DrawFn) -> PairInfo:
    role, own, partner = draw(st.sampled_from(ROLES)), draw(_words), draw(_words)
    query, gallery = (own, partner) if role == "query" else (partner, own)
    return PairInfo(
        fingerprint=pair_fingerprint(query, gallery),
        role=role,
        own=own,
        partner=partner,
        partner_kind=draw(st.sampled_from(KINDS)),
        partner_file=draw(_words),
    )


_common: dict[str, Any] = {
    "tower": st.dictionaries(_words, _json, max_size=3),
    "embedding_dim": st.integers(1, 1 << 20),
    "normalized": st.booleans(),
    "run_fingerprint": _words,
    "siamese_version": _words,
    "precision": _words,
    "format_version": st.integers(1, MODEL_FORMAT_VERSION),
    "pair": st.none() | _pairs(),
    # keys a later siamese may add: kept, never clashing with the card's own
    "extra": st.dictionaries(_words.map(lambda k: f"later-{k}"), _words, max_size=2),
}
cards = st.builds(ModelInfo, input_spec=_specs(), **_common) | st.builds(
    TextModelInfo, tokenizer_json=st.text(), max_length=st.integers(1, 4096), **_common
)


@settings(max_examples=300, deadline=None)
@given(card=cards)
def test_any_card_round_trips(card: ModelCard) -> None:
    metadata = card.to_metadata()
    assert all(key.startswith("siamese.") and isinstance(v, str) for key, v in metadata.items())
    assert ModelCard.from_metadata(metadata, SOURCE) == card
    assert type(card).from_metadata(metadata, SOURCE) == card
    assert json.loads(json.dumps(card.to_dict())) == card.to_dict()


# ------------------------------------------------------------- malformed metadata, one line
def _refusal(metadata: dict[str, str], source: str = SOURCE) -> str:
    with pytest.raises(ModelError) as caught:
        ModelCard.from_metadata(metadata, source)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{source}: "), message
    return message


def _is_count(text: str) -> bool:
    try:
        return int(text) >= 1
    except ValueError:
        return False


_not_a_count = _words.filter(lambda t: not _is_count(t)) | st.sampled_from(["0", "-3", "2.0"])
_not_an_object = (
    _words.filter(lambda t: not t.strip().startswith("{"))
    | st.sampled_from(["[]", "3", '"x"', "{", '{"a": }'])
    | _json.filter(lambda v: not isinstance(v, dict)).map(json.dumps)
)
_bad_values: dict[str, st.SearchStrategy[str]] = {
    "embedding_dim": _not_a_count,
    "max_length": _not_a_count,
    "format_version": _not_a_count,
    "normalized": _words.filter(lambda t: t not in ("true", "false")),
    "tower": _not_an_object,
    "input_spec": _not_an_object | st.sampled_from(['{"channels": 2}', '{"mean": "ab"}']),
    "pair": _not_an_object | st.sampled_from(['{"role": 5}', "{}"]),
    "input_dtype": _words.filter(lambda t: t != "uint8"),
}


@settings(max_examples=300, deadline=None)
@given(card=cards, data=st.data())
def test_a_wrong_value_is_refused_in_one_line_naming_the_key(
    card: ModelCard, data: st.DataObject
) -> None:
    metadata = card.to_metadata()
    keys = [k for k in _bad_values if f"siamese.{k}" in metadata]
    key = data.draw(st.sampled_from(keys))
    metadata[f"siamese.{key}"] = data.draw(_bad_values[key])
    assert f"siamese.{key}" in _refusal(metadata)


@settings(max_examples=100, deadline=None)
@given(card=cards, data=st.data())
def test_a_missing_key_is_refused_in_one_line_naming_it(
    card: ModelCard, data: st.DataObject
) -> None:
    metadata = card.to_metadata()
    required = ["embedding_dim", "input_spec", "tokenizer", "max_length", "input_dtype"]
    key = data.draw(st.sampled_from([k for k in required if f"siamese.{k}" in metadata]))
    del metadata[f"siamese.{key}"]
    message = _refusal(metadata)
    assert f"siamese.{key}" in message and ("missing" in message or "nothing" in message)


@given(kind=_words.filter(lambda k: k not in KINDS), card=cards)
def test_an_unknown_kind_is_refused(kind: str, card: ModelCard) -> None:
    metadata = {**card.to_metadata(), "siamese.kind": kind}
    assert "siamese.kind" in _refusal(metadata)


@settings(max_examples=300, deadline=None)
@given(
    metadata=st.dictionaries(
        st.sampled_from(
            ["kind", "format_version", "input_spec", "tokenizer", "max_length", "tower", "pair"]
            + ["embedding_dim", "normalized", "input_dtype", "version", "other"]
        ).map(lambda k: f"siamese.{k}"),
        st.text(max_size=12) | st.sampled_from(["text", "image", "2", "1", "true", "{}"]),
    )
)
def test_any_metadata_reads_as_a_card_or_one_line_error(metadata: dict[str, str]) -> None:
    try:
        ModelCard.from_metadata(metadata, SOURCE)
    except ModelError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{SOURCE}: ")


def test_the_other_problems_each_have_their_line() -> None:
    image = ModelInfo(input_spec=InputSpec(), embedding_dim=4).to_metadata()
    text = TextModelInfo(tokenizer_json="{}", max_length=8, embedding_dim=4).to_metadata()
    assert "not a siamese model" in _refusal({"other.key": "1"})
    assert "newer than this siamese" in _refusal({**image, "siamese.format_version": "3"})
    assert "model format 2 takes uint8" in _refusal({**image, "siamese.input_dtype": "float32"})
    with pytest.raises(ModelError, match=f"^{SOURCE}: a text tower; it embeds texts"):
        ModelInfo.from_metadata(text, SOURCE)
    with pytest.raises(ModelError, match=f"^{SOURCE}: not a text tower"):
        TextModelInfo.from_metadata(image, SOURCE)
