"""Stage 1, tokenization: the prompt as the model's tokens, each tied to the characters it covers.

Byte-level BPE (GPT-2) can split one character across tokens. Offsets here always tile the prompt:
a character belongs to the token holding its last byte, so a token holding only the first bytes of a
character covers no characters, and consecutive tokens never overlap or leave a gap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import accumulate

from tokenizers import decoders
from transformers import PreTrainedTokenizerBase

_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})


@dataclass(frozen=True)
class Token:
    """One token: its id, its vocabulary entry, its text, and the prompt characters it covers."""

    index: int
    id: int
    piece: str  # the vocabulary entry as stored (GPT-2 writes a leading space as 'Ġ')
    text: str  # the decoded text, '' for a token that holds only part of a character
    display: str  # text with spaces and line breaks made visible
    start: int  # character offsets into the prompt: prompt[start:end]
    end: int

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte, reversed (the inverse of its `bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return {char: byte for byte, char in enumerate(chars)}


def display(text: str) -> str:
    """Make whitespace visible: ' cat' -> '␣cat'."""
    return text.translate(_VISIBLE)


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return isinstance(getattr(backend, "decoder", None), decoders.ByteLevel)


def _token_bytes(pieces: list[str]) -> list[bytes] | None:
    table = _byte_decoder()
    try:
        return [bytes(table[c] for c in piece) for piece in pieces]
    except KeyError:  # a special token such as <|endoftext|> written as itself
        return None


def _byte_spans(prompt: str, chunks: list[bytes]) -> list[tuple[int, int]] | None:
    """Character spans from token bytes; None when the bytes do not spell the prompt."""
    if b"".join(chunks) != prompt.encode("utf-8"):
        return None
    char_ends = list(accumulate(len(c.encode("utf-8")) for c in prompt))
    spans, char, byte = [], 0, 0
    for chunk in chunks:
        start, byte = char, byte + len(chunk)
        while char < len(char_ends) and char_ends[char] <= byte:
            char += 1
        spans.append((start, char))
    return spans


def _tiled(offsets: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Make a tokenizer's own offsets tile the prompt (they may skip spaces or overlap)."""
    spans, previous = [], 0
    for index, (_, end) in enumerate(offsets):
        end = length if index == len(offsets) - 1 else max(previous, min(end, length))
        spans.append((previous, end))
        previous = end
    return spans


def tokenize(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[Token]:
    """Tokenize as the model reads the prompt (special tokens such as a BOS included)."""
    encoding = tokenizer(prompt, return_offsets_mapping=True)
    ids: list[int] = encoding["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    chunks = _token_bytes(pieces) if _is_byte_level(tokenizer) else None
    spans = _byte_spans(prompt, chunks) if chunks is not None else None
    if spans is None:
        chunks = None
        spans = _tiled([tuple(o) for o in encoding["offset_mapping"]], len(prompt))
    tokens = []
    for index, (token_id, piece, (start, end)) in enumerate(zip(ids, pieces, spans, strict=True)):
        if chunks is not None:
            text = chunks[index].decode("utf-8", errors="replace") if end > start else ""
            shown = display(prompt[start:end]) if end > start else _hex(chunks[index])
            text = prompt[start:end] if end > start else text
        else:
            text = tokenizer.decode([token_id])
            shown = display(text)
        tokens.append(Token(index, token_id, piece, text, shown, start, end))
    return tokens


def _hex(chunk: bytes) -> str:
    """How a token holding part of a character is shown: its bytes, e.g. '‹F0 9F›'."""
    return "‹" + " ".join(f"{b:02X}" for b in chunk) + "›"
