"""Text input of a text tower: one tokenizer definition for training and serving.

A text tower reads token ids. Its tokenizer is a Hugging Face ``tokenizers`` WordPiece model
trained on the user's captions (offline, :func:`train_tokenizer`), configured to lower-case,
truncate and pad every text to the tower's fixed ``max_length``, and saved as JSON: in the run
directory (``tokenizer.json``) and in the exported ONNX file's metadata, so the engine tokenises
exactly as training did, without torch and without the run. :func:`encode_texts` is the one
function both sides call (the text counterpart of the image input spec).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from siamese.core.errors import ModelError

PAD, UNKNOWN = "[PAD]", "[UNK]"
#: Longest text accepted for embedding (characters): longer ones are refused, not cut silently.
MAX_TEXT_CHARS = 2000


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> Tokenizer:
    """A WordPiece tokenizer learnt from ``texts`` that pads and truncates to ``max_length``.

    Padding id 0 is ``[PAD]``; words never seen become sub-words, or ``[UNK]`` at worst.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNKNOWN))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, UNKNOWN], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return fixed_length(tokenizer, max_length)


def fixed_length(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """Make ``tokenizer`` truncate and pad every text to exactly ``max_length`` tokens."""
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(
        pad_id=tokenizer.token_to_id(PAD) or 0, pad_token=PAD, length=max_length
    )
    return tokenizer


def load_tokenizer(json_text: str, source: str) -> Tokenizer:
    """A tokenizer from its JSON (as saved with a run or a model); ``source`` is named in errors.

    Raises:
        ModelError: not a tokenizer, or one that does not pad to a fixed length.
    """
    try:
        tokenizer = Tokenizer.from_str(json_text)
    except Exception as exc:  # noqa: BLE001 (the library raises plain Exceptions on bad JSON)
        raise ModelError(f"{source}: malformed tokenizer ({str(exc).splitlines()[0]})") from None
    padding = tokenizer.padding
    if not padding or not padding.get("length") or not tokenizer.truncation:
        raise ModelError(f"{source}: the tokenizer does not pad and truncate to a fixed length")
    return tokenizer


def encode_texts(
    tokenizer: Tokenizer, texts: Sequence[str]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Token ids and attention mask (1 = token, 0 = padding), each N × max_length int64.

    Raises:
        ValueError: an empty, blank or over-long text (the caller names where it came from).
    """
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a text query is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"a text query has {len(text)} characters (at most {MAX_TEXT_CHARS})")
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(len(texts), -1)
    return ids, mask
