"""Where training batches come from: a tensor, an activation store, or a model run on texts.

Every source hands out global batches by step number (``get(step) -> (x, y or None)``), so a resumed run sees
exactly the batches an uninterrupted one would; ``state()``/``load_state()`` hold what a checkpoint needs
(tensors and JSON values only).

- ``TensorSource``: rows of an ``[n, d_in]`` tensor (and targets), in seeded per-epoch permutations.
- ``StoreSource``: ``store.batches(site, batch_size, shuffle=True, seed=seed + epoch)``, full batches only.
- ``ModelStream`` + ``SharedSource``: one forward pass per batch of texts feeds several SAEs (on the fly).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from ._config import SAEError, TrainConfig

if TYPE_CHECKING:
    from ..core._model import Model


@runtime_checkable
class BatchStore(Protocol):
    """What training reads of an activation store (``tsi.store.ActivationStore``, or any look-alike)."""

    def batches(
        self, site: str, batch_size: int = ..., shuffle: bool = ..., seed: int = ...
    ) -> Iterable[Any]:
        """One epoch over ``site`` in batches ``[batch_size, *shape]`` (tensors, or what ``torch.as_tensor`` reads)."""
        ...


class TensorSource:
    """Global batch ``s`` = rows ``[s*B, (s+1)*B)`` of the concatenation of seeded per-epoch permutations."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch: int, seed: int):
        self.x, self.y, self.batch, self.seed = x, y, batch, seed
        self.n = x.shape[0]
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {
                epoch: torch.randperm(
                    self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                )
            }
        return self._perms[epoch]

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        start, got, parts = step * self.batch, 0, []
        while got < self.batch:  # slices of the permutations, joined as tensors (no Python list of rows)
            epoch, off = divmod(start + got, self.n)
            take = min(self.batch - got, self.n - off)
            parts.append(self._perm(epoch)[off : off + take])
            got += take
        index = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self.x.index_select(0, index), (self.y.index_select(0, index) if self.y is not None else None)


class StoreSource:
    """Batches from ``store.batches(site, batch_size, shuffle=True, seed=seed + epoch)``; full batches only."""

    def __init__(self, store: BatchStore, sites: Sequence[str], batch: int, seed: int):
        self.store, self.sites, self.batch, self.seed = store, list(sites), batch, seed
        self.epoch, self.pos = 0, 0
        self._its: list[Iterator[Any]] | None = None

    def _open(self) -> list[Iterator[Any]]:
        self._its = [
            iter(self.store.batches(s, batch_size=self.batch, shuffle=True, seed=self.seed + self.epoch))
            for s in self.sites
        ]
        for _ in range(self.pos):  # resume: skip what the interrupted run consumed
            for it in self._its:
                next(it)
        return self._its

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        for attempt in range(2):
            its = self._its if self._its is not None else self._open()
            try:
                parts = [next(it) for it in its]
                if parts[0].shape[0] < self.batch:
                    raise StopIteration
            except StopIteration:
                if self.pos == 0 and attempt == 0:
                    raise SAEError(
                        f"the store holds fewer than batch_size={self.batch} rows; pass a smaller batch_size"
                    ) from None
                self.epoch, self.pos, self._its = self.epoch + 1, 0, None
                continue
            self.pos += 1
            x = torch.as_tensor(parts[0]).reshape(-1, parts[0].shape[-1])
            y = torch.as_tensor(parts[1]).reshape(-1, parts[1].shape[-1]) if len(parts) > 1 else None
            return x, y
        raise SAEError("the store gave no batch")

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, st: dict[str, int]) -> None:
        self.epoch, self.pos, self._its = int(st["epoch"]), int(st["pos"]), None


class ModelStream:
    """Runs the model on batches of texts (one forward for every site) and serves shuffled global batches."""

    def __init__(self, model: Model, texts: list[str], sites: list[str], tcfg: TrainConfig):
        self.model, self.texts, self.sites = model, texts, sites
        self.batch, self.context, self.text_batch = tcfg.batch_size, tcfg.context, tcfg.text_batch_size
        self.buffer_rows = self.batch * tcfg.buffer_batches
        self.gen = torch.Generator().manual_seed(tcfg.seed)
        self.next_text = 0
        self.buf: dict[str, torch.Tensor] = {}
        self.step = -1
        self.current: dict[str, torch.Tensor] = {}
        self.tokens_per_text: float | None = None
        self._key_cache: dict[str, Any] | None = None

    def _forward(self) -> dict[str, torch.Tensor]:
        texts = [self.texts[(self.next_text + i) % len(self.texts)] for i in range(self.text_batch)]
        self.next_text += self.text_batch
        tok = self.model.tokenizer
        if tok is None:
            raise SAEError("on-the-fly training needs a model with a tokenizer")
        enc = tok(texts, truncation=True, max_length=self.context, padding=True, return_tensors="pt")
        run = self.model.run(dict(enc), cache=self.sites, return_logits=False)
        keep = enc["attention_mask"].bool().reshape(-1)
        if self.tokens_per_text is None:
            self.tokens_per_text = float(keep.sum()) / len(texts)
        return {s: run.cache[s].reshape(-1, run.cache[s].shape[-1])[keep].float().cpu() for s in self.sites}

    def _fill(self) -> None:
        while not self.buf or self.buf[self.sites[0]].shape[0] < self.buffer_rows:
            new = self._forward()
            self.buf = {s: torch.cat([self.buf[s], new[s]]) if self.buf else new[s] for s in self.sites}
        perm = torch.randperm(self.buf[self.sites[0]].shape[0], generator=self.gen)
        self.buf = {s: v[perm] for s, v in self.buf.items()}

    def peek(self) -> dict[str, torch.Tensor]:
        if not self.buf:
            self._fill()
        return self.buf

    def estimate_batches(self) -> int:
        self.peek()
        return int(len(self.texts) * (self.tokens_per_text or 1) // self.batch)

    def _key(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed by this stream."""
        if self._key_cache is not None:
            return self._key_cache
        digest = hashlib.sha1()
        for t in self.texts:
            digest.update(str(t).encode("utf-8", "surrogatepass") + b"\0")
        self._key_cache = {
            "texts": [len(self.texts), digest.hexdigest()], "sites": list(self.sites), "batch": self.batch,
            "context": self.context, "text_batch": self.text_batch, "buffer_rows": self.buffer_rows,
        }  # fmt: skip
        return self._key_cache

    def state(self) -> dict[str, Any]:
        """Position in the texts, shuffle generator and the rows still buffered (between steps)."""
        return {
            "key": self._key(),
            "next_text": self.next_text,
            "gen": self.gen.get_state(),
            "buf": {s: v.clone() for s, v in self.buf.items()},  # clone: not the whole buffer's storage
            "tokens_per_text": self.tokens_per_text,
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if not isinstance(st, dict) or st.get("key") != self._key():
            raise SAEError(
                "the checkpoint was made for other texts, sites or stream settings (batch_size, context, "
                "text_batch_size, buffer_batches); use resume=False or another checkpoint_dir"
            )
        self.next_text = int(st["next_text"])
        self.gen.set_state(st["gen"])
        self.buf = {s: st["buf"][s] for s in self.sites}
        self.tokens_per_text = st["tokens_per_text"]
        self.step, self.current = -1, {}

    def get(self, step: int) -> dict[str, torch.Tensor]:
        if step != self.step:
            if not self.buf or self.buf[self.sites[0]].shape[0] < self.buffer_rows // 2 + self.batch:
                self._fill()
            self.current = {s: v[: self.batch] for s, v in self.buf.items()}
            self.buf = {s: v[self.batch :] for s, v in self.buf.items()}
            self.step = step
        return self.current


class SharedSource:
    """One SAE's view of the shared stream; the ``owner`` (the first) carries the stream's checkpoint state."""

    def __init__(self, stream: ModelStream, s_in: str, s_out: str | None, owner: bool = False):
        self.stream, self.s_in, self.s_out, self.owner = stream, s_in, s_out, owner

    def state(self) -> dict[str, Any] | None:
        return self.stream.state() if self.owner else None

    def load_state(self, st: dict[str, Any] | None) -> None:
        if self.owner:
            if st is None:
                raise SAEError("the checkpoint was not made by on-the-fly training; use resume=False")
            self.stream.load_state(st)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self.stream.get(step)
        return batch[self.s_in], (batch[self.s_out] if self.s_out else None)
