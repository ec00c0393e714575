"""What a siamese ONNX model says about itself: one codec for its ``siamese.*`` metadata_props.

Export writes a model card into every ONNX file and the engine reads it back, so a model needs no
run directory. Image and text towers share the card (:class:`ModelCard`) and this codec: one
reading, validation with one-line errors naming the file and the key, one writing. The keys, in
the order siamese has always written them (files exported before read back and re-export byte
for byte): ``kind`` (``text``; absent for an image tower, as in files from before text towers),
``format_version`` (absent: format 1), the kind's own keys (an image tower's ``input_spec``; a
text tower's ``tokenizer``, Hugging Face ``tokenizers`` JSON padding to ``max_length``, and
``max_length``), ``tower``, ``embedding_dim``, ``normalized`` (L2-normalised outputs),
``run_fingerprint``, ``version`` (of siamese), ``precision``, ``pair`` (pair_card.py), any keys
this siamese does not know (kept in ``extra``), and last an image tower's ``input_dtype``.

Format 2 image towers take uint8 ``images`` and normalise inside the graph; format 1 took float32
pixels normalised by the host, has no ``input_dtype`` key and still loads (the engine normalises
for it). A text tower takes ``input_ids`` and ``attention_mask`` (int64 N × max_length); both
return ``embeddings`` (float32 N × D).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from siamese.contracts.pair_card import PairInfo
from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, ModelError, named

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

MODEL_FORMAT_VERSION = 2
#: The ``images`` element type per format.
INPUT_DTYPES = {1: "float32", 2: "uint8"}
INPUT_NAME = "images"
TEXT_INPUTS = ("input_ids", "attention_mask")
OUTPUT_NAME = "embeddings"
IMAGE_KIND, TEXT_KIND = "image", "text"
KINDS = (IMAGE_KIND, TEXT_KIND)
PREFIX = "siamese."


class _BadValue(ValueError):
    """A metadata value that cannot be read; its message completes ``siamese.KEY …``."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _BadValue(f"is {_shown(text)}, not a whole number") from None
    if value < 1:
        raise _BadValue(f"is {value}, not a positive number")
    return value


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise _BadValue(f"is {_shown(text)}, not true or false")
    return text == "true"


def _object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _BadValue(f"is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _BadValue(f"is a JSON {type(value).__name__}, not an object")
    return value


def _spec(text: str) -> InputSpec:
    data = _object(text)
    try:
        return InputSpec.from_dict(data)
    except (ConfigError, TypeError, ValueError) as exc:
        raise _BadValue(f"is not an input spec ({exc})") from None


def _pair(text: str) -> PairInfo:
    info = PairInfo.from_dict(_object(text))
    if info.partner_kind not in KINDS:
        raise _BadValue(f"names partner kind {_shown(info.partner_kind)}, not one of {KINDS}")
    return info


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class _Key:
    """One metadata key: the card attribute it holds, how it is read and written."""

    name: str
    attr: str
    read: Callable[[str], Any] = str
    write: Callable[[Any], str] = str
    required: bool = False  # else an absent key leaves the card's default


_COMMON_KEYS = (
    _Key("tower", "tower", _object, _json),
    _Key("embedding_dim", "embedding_dim", _count, required=True),
    _Key("normalized", "normalized", _flag, lambda v: "true" if v else "false"),
    _Key("run_fingerprint", "run_fingerprint"),
    _Key("version", "siamese_version"),
    _Key("precision", "precision"),
    _Key("pair", "pair", _pair, lambda pair: _json(pair.to_dict())),
)


def _malformed(source: str, key: str, problem: str) -> ModelError:
    line = " ".join(f"{source}: malformed siamese metadata: {PREFIX}{key} {problem}".split())
    return ModelError(f"{line}; re-export the model with `siamese export`")


def _siamese_values(metadata: Mapping[str, str], source: str) -> dict[str, str]:
    values = {k[len(PREFIX) :]: v for k, v in metadata.items() if k.startswith(PREFIX)}
    if not values:
        raise ModelError(
            f"{source}: not a siamese model (no siamese.* metadata); export it with "
            "`siamese export`"
        )
    return values


def _format_version(values: dict[str, str], source: str) -> int:
    try:
        version = _count(values["format_version"]) if "format_version" in values else 1
    except ValueError as exc:
        raise _malformed(source, "format_version", str(exc)) from None
    if version > MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{source}: model format {version} is newer than this siamese supports "
            f"({MODEL_FORMAT_VERSION}); upgrade siamese"
        )
    return version


def model_kind(metadata: Mapping[str, str], source: str) -> str:
    """``"text"`` or ``"image"``: the kind a model's metadata declares.

    A file without siamese metadata counts as an image tower, whose reader refuses it with its
    usual message.

    Raises:
        ModelError: a kind this siamese does not know.
    """
    kind = metadata.get(PREFIX + "kind", IMAGE_KIND)
    if kind not in KINDS:
        raise ModelError(
            f"{source}: siamese.kind is {_shown(kind)}, a kind this siamese does not know "
            f"({', '.join(KINDS)}); upgrade siamese"
        )
    return kind


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """The facts every exported tower carries; :class:`ModelInfo` and :class:`TextModelInfo`."""

    kind: ClassVar[str]
    _KEYS: ClassVar[tuple[_Key, ...]] = ()  # the kind's own, after format_version
    _TRAILER_KEYS: ClassVar[tuple[str, ...]] = ()  # written after extra, by _trailer
    _OTHER_KIND: ClassVar[str] = ""  # why this kind's reader refuses the other kind

    tower: dict[str, Any] = field(default_factory=dict)
    embedding_dim: int
    normalized: bool = False
    run_fingerprint: str = ""
    siamese_version: str = ""
    precision: str = "fp32"
    format_version: int = MODEL_FORMAT_VERSION
    pair: PairInfo | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """Flatten to ``siamese.*`` string key/values for ONNX metadata_props."""
        values = {} if self.kind == IMAGE_KIND else {"kind": self.kind}
        values["format_version"] = str(self.format_version)
        for key in (*self._KEYS, *_COMMON_KEYS):
            value = getattr(self, key.attr)
            if value is not None:
                values[key.name] = key.write(value)
        values |= self.extra | self._trailer()
        return {PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> Self:
        """Read a card from metadata_props; ``ModelCard`` reads either kind.

        Args:
            metadata: the model's metadata_props.
            source: the model file, named in errors.

        Raises:
            ModelError: not a siamese model, a model of the other kind (for a kind's own
                class), too new, or a malformed or missing key (one line naming the key).
        """
        values = _siamese_values(metadata, source)
        version = _format_version(values, source)  # a newer format may have new kinds
        kind = model_kind(metadata, source)
        card_class = _CARDS[kind] if cls is ModelCard else cls
        if card_class.kind != kind:
            raise ModelError(f"{source}: {cls._OTHER_KIND}")
        return card_class._decode(values, version, source)  # type: ignore[return-value]

    @classmethod
    def _decode(cls, values: dict[str, str], version: int, source: str) -> ModelCard:
        cls._check_format(values, version, source)
        reserved = {"kind", "format_version", *cls._TRAILER_KEYS}
        card: dict[str, Any] = {"format_version": version}
        for key in (*cls._KEYS, *_COMMON_KEYS):
            reserved.add(key.name)
            if key.name in values:
                try:
                    card[key.attr] = key.read(values[key.name])
                except ValueError as exc:
                    raise _malformed(source, key.name, str(exc)) from None
            elif key.required:
                raise _malformed(source, key.name, "is missing")
        card["extra"] = {k: v for k, v in values.items() if k not in reserved}
        return cls(**card)

    @classmethod
    def _check_format(cls, values: dict[str, str], version: int, source: str) -> None:
        """Refuse keys that contradict the format version (none but an image's input type)."""

    def _trailer(self) -> dict[str, str]:
        """Keys written after ``extra`` (where the first files of the kind had them)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for `siamese info` and export reports)."""
        head, tail = self._summary()
        shared = {f.name: getattr(self, f.name) for f in fields(ModelCard)}
        del shared["pair"], shared["extra"]  # `siamese info` shows the pair on its own
        return head | shared | tail

    def _summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {}


@dataclass(frozen=True, kw_only=True)
class ModelInfo(ModelCard):
    """An image tower's card: its input spec, and the input type its format implies."""

    kind: ClassVar[str] = IMAGE_KIND
    _KEYS = (_Key("input_spec", "input_spec", _spec, lambda s: _json(s.to_dict()), True),)
    _TRAILER_KEYS = ("input_dtype",)
    _OTHER_KIND = f"a text tower; it embeds texts ({named('text')}), not images"

    input_spec: InputSpec

    @property
    def input_dtype(self) -> str:
        """The element type of the ``images`` input (float32 for format 1, else uint8)."""
        return INPUT_DTYPES[self.format_version]

    @classmethod
    def _check_format(cls, values: dict[str, str], version: int, source: str) -> None:
        said = values.get("input_dtype", "") if version >= 2 else INPUT_DTYPES[1]
        if said != INPUT_DTYPES[version]:
            raise ModelError(
                f"{source}: model format {version} takes {INPUT_DTYPES[version]} input but "
                f"siamese.input_dtype says {said or 'nothing'!r}; "
                "re-export it with `siamese export`"
            )

    def _trailer(self) -> dict[str, str]:
        # Format 1 files never had the key.
        return {"input_dtype": self.input_dtype} if self.format_version >= 2 else {}

    def _summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"input_spec": self.input_spec.to_dict()}, {"input_dtype": self.input_dtype}


@dataclass(frozen=True, kw_only=True)
class TextModelInfo(ModelCard):
    """A text tower's card: the tokenizer it carries, so the engine tokenises from the file."""

    kind: ClassVar[str] = TEXT_KIND
    _KEYS = (
        _Key("tokenizer", "tokenizer_json", required=True),
        _Key("max_length", "max_length", _count, required=True),
    )
    _OTHER_KIND = "not a text tower (it embeds images)"

    tokenizer_json: str
    max_length: int

    def _summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            {"embeds": TEXT_KIND, "max_length": self.max_length},
            {"tokenizer_bytes": len(self.tokenizer_json.encode())},
        )


_CARDS: dict[str, type[ModelCard]] = {IMAGE_KIND: ModelInfo, TEXT_KIND: TextModelInfo}
