"""Stage 1, tokenization: the prompt as the model's tokens, each tied to the characters it covers.

Byte-level BPE (GPT-2, SmolLM2, Qwen, Llama 3) and byte fallback (Gemma's SentencePiece) can split
one character across tokens. Offsets here always tile the prompt: a character belongs to the token
holding its last byte, so a token holding only the first bytes of a character covers no
characters, and consecutive tokens never overlap or leave a gap.

What a token is SHOWN as comes from its own bytes alone (`shown`): whole characters as text, and
each byte of a character it holds only part of as `<0xNN>`, so "ü" split in two shows as `<0xC3>`
and `<0xBC>`, never as a neighbour's character or as a blank (UTF-8 resynchronizes, so the bytes
decoded alone give the same answer as in their prompt).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import accumulate

from tokenizers import decoders
from transformers import PreTrainedTokenizerBase

_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\xa0": "⍽"})
_RUNNING = str.maketrans({"\n": "↵", "\t": "⇥", "\r": "␍"})
BYTE = "<0x{:02X}>"  # how one byte of a split character is shown (SentencePiece's own spelling)
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_SPACE_PIECE = "▁"  # SentencePiece writes a space as U+2581


def _as_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(BYTE.format(b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("lmscope-bytes", _as_bytes)


@dataclass(frozen=True)
class Token:
    """One token: its id, its vocabulary entry, its text, and the prompt characters it covers."""

    index: int
    id: int
    piece: str  # the vocabulary entry as stored (GPT-2 writes a leading space as 'Ġ')
    text: str  # the prompt characters it completes, '' for a token that completes none
    display: str  # its own bytes shown (`shown`): whitespace visible, split characters as <0xNN>
    start: int  # character offsets into the prompt: prompt[start:end]
    end: int
    split: bool = False  # it holds part of a character that other tokens hold the rest of
    part_of: str = ""  # ... and which character(s) of the prompt those are, in order

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
    """Make whitespace visible: ' cat' -> '␣cat' (a no-break space is ⍽, not a blank)."""
    return text.translate(_VISIBLE)


def running_text(text: str) -> str:
    """Running text (a continuation) with its line breaks, tabs and carriage returns visible as
    the token chips show them (↵ ⇥ ␍), spaces left as spaces: twenty newlines are not a blank."""
    return text.translate(_RUNNING)


def shown(chunk: bytes) -> str:
    """A token's bytes as a person should see them: whole characters as text with whitespace
    visible, each byte of a character the token holds only part of as <0xNN>."""
    return display(chunk.decode("utf-8", errors="lmscope-bytes"))


def is_split(chunk: bytes) -> bool:
    """Whether the bytes hold part of a character (they are not whole UTF-8 characters)."""
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _lead(byte: int) -> bool:
    return byte & 0xC0 != 0x80  # not a UTF-8 continuation byte


def _utf8_length(lead: int) -> int:
    """Bytes of the UTF-8 character that starts with byte `lead`."""
    return 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def part_of(prompt: str, chunk: bytes, start: int, end: int) -> str:
    """The characters a token with bytes `chunk` and span `prompt[start:end]` holds only some
    bytes of: one it finishes (continuation bytes first, the character its span begins with) and
    one it begins or continues (the character right after its span: a character belongs to the
    token holding its last byte)."""
    if not is_split(chunk):
        return ""
    found = []
    leading = next((i for i, byte in enumerate(chunk) if _lead(byte)), len(chunk))
    if leading and start < end:
        found.append(prompt[start])  # it finishes a character begun by the tokens before
    last = max((i for i in range(leading, len(chunk)) if _lead(chunk[i])), default=None)
    unfinished = last is not None and len(chunk) - last < _utf8_length(chunk[last])
    if (unfinished or (leading and start == end)) and end < len(prompt):
        found.append(prompt[end])
    return "".join(dict.fromkeys(found))


def piece_bytes(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[bytes | None]:
    """Each vocabulary entry's own bytes, or None where it has none to show (a special token
    written as itself, such as <|endoftext|>, or a tokenizer whose pieces say nothing of bytes:
    then its decoded text stands for it)."""
    pieces = tokenizer.convert_ids_to_tokens(ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    byte_level, byte_fallback = _is_byte_level(tokenizer), _is_byte_fallback(tokenizer)
    table = _byte_decoder()
    found: list[bytes | None] = []
    for token_id, piece in zip(ids, pieces, strict=True):
        if token_id in special or not isinstance(piece, str):
            found.append(None)
        elif byte_level:
            try:
                found.append(bytes(table[c] for c in piece))
            except KeyError:  # an added token written as itself
                found.append(None)
        elif match := _BYTE_PIECE.match(piece):  # SentencePiece's byte fallback
            found.append(bytes([int(match.group(1), 16)]))
        elif _SPACE_PIECE in piece or byte_fallback:  # its pieces are text, ▁ for a space
            found.append(piece.replace(_SPACE_PIECE, " ").encode("utf-8"))
        else:
            found.append(None)
    return found


def token_display(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    """How one vocabulary entry is shown anywhere on the page (`shown` of its own bytes; its
    decoded text, whitespace visible, where it has none)."""
    chunk = piece_bytes(tokenizer, [token_id])[0]
    return shown(chunk) if chunk is not None else display(tokenizer.decode([token_id]))


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return isinstance(getattr(backend, "decoder", None), decoders.ByteLevel)


def _is_byte_fallback(tokenizer: PreTrainedTokenizerBase) -> bool:
    """A SentencePiece-style tokenizer whose decoder falls back to bytes (Gemma, Llama 2): its
    pieces are the text itself, ▁ for a space, and <0xNN> for a byte."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    try:
        return b'"ByteFallback"' in decoder.__getstate__()
    except (AttributeError, TypeError):
        return False


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
    chunks = piece_bytes(tokenizer, ids)
    # a special token the tokenizer adds (a BOS) holds none of the prompt's bytes
    spans = _byte_spans(prompt, [chunk or b"" for chunk in chunks])
    if spans is None:  # pieces that do not spell the prompt byte for byte
        spans = _tiled([tuple(o) for o in encoding["offset_mapping"]], len(prompt))
    tokens = []
    for index, (token_id, piece, chunk, (start, end)) in enumerate(
        zip(ids, pieces, chunks, spans, strict=True)
    ):
        if chunk is None:
            text = tokenizer.decode([token_id])
            tokens.append(Token(index, token_id, piece, text, display(text), start, end))
            continue
        text = prompt[start:end]
        tokens.append(
            Token(
                index,
                token_id,
                piece,
                text,
                shown(chunk),
                start,
                end,
                split=is_split(chunk),
                part_of=part_of(prompt, chunk, start, end),
            )
        )
    return tokens
