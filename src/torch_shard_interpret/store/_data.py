"""Data sources -> packed token rows ``[context]``, in a deterministic order.

Texts (a list, an iterable, or a .txt / .jsonl / .parquet file) are tokenized without special tokens and
concatenated with the EOS token after every document; the stream is cut into rows of exactly ``context``
tokens and the ragged tail (fewer than ``context`` tokens) is dropped. Token batches (a LongTensor
``[n, context]`` or an iterable of them) are used row by row as they are. The same data always gives
the same rows in the same order, which is what makes shard ``k`` of a harvest reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core import InputError

TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")
_TOKENIZE_CHUNK = 256  # documents tokenized per tokenizer call


@dataclass
class Source:
    """Where the rows come from: a JSON-able description (for the manifest) and the row iterator."""

    description: dict[str, Any]
    context: int
    _rows: Any = field(repr=False, default=None)
    dropped_tail_tokens: int = 0
    """Tokens of the ragged tail that did not fill a last row (known once the rows are exhausted)."""

    def rows(self) -> Iterator[torch.Tensor]:
        """Every packed row, a LongTensor ``[context]``, in order."""
        return self._rows(self)


def make_source(data: Any, tokenizer: Any, context: int | None) -> Source:
    """Recognise ``data`` (texts, a file path, token tensors) and describe it."""
    if isinstance(data, (str, os.PathLike)):
        return _file_source(Path(data), tokenizer, context or 128)
    if torch.is_tensor(data):
        return _tensor_source([data], context, {"kind": "tokens", **_tensor_desc(data)})
    if isinstance(data, (list, tuple)):
        if not data:
            raise InputError("data is empty; give a list of texts, a .txt/.jsonl/.parquet file or token ids")
        if all(isinstance(t, str) for t in data):
            texts = list(data)
            digest = hashlib.sha256()
            for t in texts:
                digest.update(t.encode("utf-8") + b"\0")
            desc = {"kind": "texts", "n_documents": len(texts), "sha256": digest.hexdigest()}
            return _text_source(lambda: iter(texts), tokenizer, context or 128, desc)
        if all(torch.is_tensor(t) for t in data):
            digest = hashlib.sha256()
            for t in data:
                digest.update(_tensor_desc(t)["sha256"].encode())
            desc = {"kind": "tokens", "n_batches": len(data), "sha256": digest.hexdigest()}
            return _tensor_source(list(data), context, desc)
        raise InputError(
            "data is a list of neither texts nor token tensors; give a list of strings or LongTensors [n, context]"
        )
    if isinstance(data, Iterable):
        # A one-shot iterable (a generator, a streaming data set): peek to see what it holds.
        it = iter(data)
        try:
            first = next(it)
        except StopIteration:
            raise InputError("data is an empty iterable; it yielded no text and no token batch") from None
        rest = _chain(first, it)
        desc = {"kind": "iterable", "type": type(data).__name__}
        if isinstance(first, str):
            return _text_source(lambda: rest, tokenizer, context or 128, {**desc, "of": "texts"})
        if torch.is_tensor(first):
            return _tensor_source(rest, context, {**desc, "of": "tokens"})
        raise InputError(
            f"data yielded a {type(first).__name__}; give texts (str) or LongTensors [n, context]"
        )
    raise InputError(
        f"cannot harvest from a {type(data).__name__}; give a list of texts, a path to a .txt/.jsonl/.parquet "
        "file, a LongTensor [n, context] or an iterable of them"
    )


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _tensor_desc(t: torch.Tensor) -> dict[str, Any]:
    digest = hashlib.sha256(t.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()).hexdigest()
    return {"shape": list(t.shape), "sha256": digest}


# ---- token batches ------------------------------------------------------------------------------
def _tensor_source(batches: Iterable[torch.Tensor], context: int | None, desc: dict[str, Any]) -> Source:
    first = batches[0] if isinstance(batches, list) else None
    if first is not None:
        _check_batch(first, context)
        context = context or int(first.shape[-1])

    def rows(src: Source) -> Iterator[torch.Tensor]:
        for batch in batches:
            _check_batch(batch, src.context)
            yield from batch.to("cpu", torch.int64)

    if context is None:
        # A streaming iterable of tensors: take the width of its first batch (peeked by make_source).
        it = iter(batches)
        head = next(it)
        _check_batch(head, None)
        context = int(head.shape[-1])
        batches = _chain(head, it)
    desc = {**desc, "context": context}
    return Source(desc, context, rows)


def _check_batch(batch: Any, context: int | None) -> None:
    if not torch.is_tensor(batch) or batch.is_floating_point() or batch.is_complex() or batch.ndim != 2:
        what = (
            f"a {batch.dtype} tensor of shape {list(batch.shape)}"
            if torch.is_tensor(batch)
            else type(batch).__name__
        )
        raise InputError(f"token batches must be integer tensors [n, context], not {what}")
    if context is not None and batch.shape[1] != context:
        raise InputError(
            f"a token batch has rows of {batch.shape[1]} tokens but context={context}; pass "
            f"context={batch.shape[1]} or reshape the batch to [n, {context}]"
        )


# ---- texts --------------------------------------------------------------------------------------
def _text_source(texts: Any, tokenizer: Any, context: int, desc: dict[str, Any]) -> Source:
    if tokenizer is None:
        raise InputError(
            "harvesting texts needs a tokenizer; wrap the model with tsi.wrap(module, tokenizer)"
        )
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise InputError(
            "the tokenizer has no EOS token to separate packed documents; set tokenizer.eos_token, or pass "
            "token ids [n, context]"
        )
    if context < 1:
        raise InputError(f"context must be at least 1 token, not {context}")
    desc = {**desc, "packing": "eos_after_each_document", "eos_token_id": int(eos), "context": context}

    def rows(src: Source) -> Iterator[torch.Tensor]:
        buf: list[int] = []
        for docs in _chunks(texts(), _TOKENIZE_CHUNK):
            for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
                buf.extend(ids)
                buf.append(eos)
            n = len(buf) // context * context
            if n:
                block = torch.tensor(buf[:n], dtype=torch.int64).view(-1, context)
                del buf[:n]
                yield from block
        src.dropped_tail_tokens = len(buf)

    return Source(desc, context, rows)


def _chunks(items: Iterable[str], n: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"data mixes texts with a {type(item).__name__}; every document must be a str")
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _file_source(path: Path, tokenizer: Any, context: int) -> Source:
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise InputError(
            f"cannot read data from {str(path)!r}: give a .txt (one document per line), .jsonl (field "
            "'text') or .parquet (column 'text') file, or a list of texts"
        )
    if not path.is_file():
        raise InputError(f"the data file {str(path)!r} does not exist")
    stat = path.stat()
    desc = {"kind": "file", "path": str(path.resolve()), "format": suffix[1:], "bytes": stat.st_size}
    reader = {".txt": _read_txt, ".jsonl": _read_jsonl, ".parquet": _read_parquet}[suffix]
    if suffix == ".parquet":
        _pyarrow()  # fail now, with the install hint, rather than mid-harvest
    return _text_source(lambda: reader(path), tokenizer, context, desc)


def _read_txt(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():  # blank lines are not documents
                yield line


def _read_jsonl(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{path}:{n} is not valid JSON ({exc.msg}); each line must be an object"
                ) from None
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise InputError(
                    f'{path}:{n} has no string field \'text\'; each line must look like {{"text": "..."}}'
                )
            yield text


def _read_parquet(path: Path) -> Iterator[str]:
    pq = _pyarrow()
    f = pq.ParquetFile(path)
    if "text" not in f.schema_arrow.names:
        raise InputError(f"{path} has no column 'text' (columns: {', '.join(f.schema_arrow.names)})")
    for batch in f.iter_batches(columns=["text"], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if text:
                yield text


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            "reading .parquet needs pyarrow: pip install 'torch-shard-interpret[store]' (or use .txt / .jsonl)"
        ) from None
    return pq
