"""Tokenization exactly as sentence-transformers does it, with the `tokenizers` package and the model's tokenizer.json.

The model's tokenizer.json is saved with fixed padding to 128 and truncation at 128; sentence-transformers
overrides both (truncation at its max_seq_length of 256 tokens, [CLS] and [SEP] included, and padding to the
longest text of each batch), and so does this wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError


@dataclass(frozen=True)
class Batch:
    """Token arrays of one chunk of texts, padded to the chunk's longest text (int64, [n, seq])."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class BertTokenizer:
    """Wordpiece tokenizer built from tokenizer.json bytes; truncates to ``max_length`` tokens."""

    def __init__(self, tokenizer_json: bytes, max_length: int) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        except Exception as exc:  # tokenizers raises its own Exception type for a bad file
            raise ModelError(f"tokenizer.json cannot be loaded: {exc}") from None
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_length, strategy="longest_first")
        self.max_length = max_length
        self.pad_id = self._tok.token_to_id("[PAD]") or 0

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text, special tokens included, truncated (no padding)."""
        return [enc.ids for enc in self._tok.encode_batch(texts, add_special_tokens=True)]

    def encode(self, texts: list[str]) -> Batch:
        """Tokenize ``texts`` into one right-padded :class:`Batch`."""
        return self.pad(self.token_ids(texts))

    def pad(self, token_ids: list[list[int]]) -> Batch:
        """Right-pad token id lists to the longest of them; mask 1 on real tokens, token types all 0."""
        seq = max(len(ids) for ids in token_ids)
        ids = np.full((len(token_ids), seq), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), seq), dtype=np.int64)
        for row, row_ids in enumerate(token_ids):
            ids[row, : len(row_ids)] = row_ids
            mask[row, : len(row_ids)] = 1
        return Batch(ids, mask, np.zeros_like(ids))
