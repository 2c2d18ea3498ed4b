"""Detectors that train something: SAE-latent rarity, a supervised probe, and layer-to-layer translators
(the abstraction / distillation detector)."""

from __future__ import annotations

import torch

from ._features import AnomalyError
from ._gaussian import SiteDetector


def _standardise(x: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return (x.float() - tensors["mu"]) / tensors["sd"]


def _moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.float()
    return {"mu": x.mean(0), "sd": x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1])}


class SAELatents(SiteDetector):
    """A TopK SAE (``tsi.sae``) trained on the trusted rows. Score: the surprise of the latents that fire,
    ``sum_j -log p_j`` over active latents (``p_j``: trusted firing rate, smoothed), plus the reconstruction
    error divided by its trusted mean. Options: ``expansion`` (4), ``k`` (8), ``steps`` and ``batch_size``
    (the defaults of ``tsi.sae.train``: about 5 epochs, at least 1,000 steps, of full batches up to 4,096)."""

    name = "sae"

    def _sae(self, d_in: int):
        from ..sae import SAE

        exp, k = int(self.options.get("expansion", 4)), int(self.options.get("k", 8))
        return SAE(d_in=d_in, d_sae=exp * d_in, kind="topk", k=min(k, exp * d_in))

    def fit(self, x, y=None, progress=False):
        from ..sae import train

        exp, k = int(self.options.get("expansion", 4)), int(self.options.get("k", 8))
        mom = _moments(x)
        xs = _standardise(x, mom)
        tcfg = {"steps": self.options.get("steps"), "seed": 0}
        if self.options.get("batch_size"):
            tcfg["batch_size"] = int(self.options["batch_size"])
        sae = train(xs, {"kind": "topk", "d_sae": exp * x.shape[1], "k": min(k, exp * x.shape[1])},
                    tcfg, progress=progress)  # fmt: skip
        with torch.no_grad():
            z = sae.encode(xs)
            err = (sae.decode(z) - xs).pow(2).sum(-1)
        rate = ((z > 0).float().sum(0) + 1) / (len(x) + 2)
        self.tensors = {**mom, **{f"sae.{n}": p.detach().clone() for n, p in sae.state_dict().items()}}
        self.tensors.update(surprise=-rate.log(), err_mean=err.mean().reshape(1).clamp_min(1e-9))
        self._model = sae

    def score(self, x):
        sae = getattr(self, "_model", None)
        if sae is None:
            sae = self._sae(x.shape[1])
            sae.load_state_dict({n[4:]: t for n, t in self.tensors.items() if n.startswith("sae.")})
            self._model = sae
        xs = _standardise(x, self.tensors)
        with torch.no_grad():
            z = sae.encode(xs)
            err = (sae.decode(z) - xs).pow(2).sum(-1)
        return (z > 0).float() @ self.tensors["surprise"] + err / self.tensors["err_mean"]


class Probe(SiteDetector):
    """Logistic regression on standardised features, trusted rows (label 0) against labelled anomalies
    (label 1); score = the logit. Options: ``l2`` (1e-3), ``steps`` (200, L-BFGS)."""

    name = "probe"
    needs_labels = True

    def fit(self, x, y=None, progress=False):
        if y is None:
            raise AnomalyError(
                "the probe detector needs labels y= (0: trusted, 1: anomalous), one per row of x"
            )
        mom = _moments(x[y == 0])
        xs = _standardise(x, mom)
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b], max_iter=int(self.options.get("steps", 200)), line_search_fn="strong_wolfe"
        )
        l2, yf = float(self.options.get("l2", 1e-3)), y.float()
        pos = yf.mean().clamp(1e-3, 1 - 1e-3)
        weight = torch.where(yf > 0, 0.5 / pos, 0.5 / (1 - pos))  # balanced classes

        def closure():
            opt.zero_grad()
            logits = xs @ w + b
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logits, yf, reduction="none") * weight
            ).mean()
            loss = loss + l2 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.tensors = {**mom, "w": w.detach(), "b": b.detach()}

    def score(self, x):
        return _standardise(x, self.tensors) @ self.tensors["w"] + self.tensors["b"]


class Translator(SiteDetector):
    """Predicts this site's features from the previous site's (ridge regression, ``l2`` default 1e-2, on
    standardised features; ``hidden > 0``: a one-hidden-layer MLP trained with Adam). Score: the squared
    prediction error over its trusted mean. Fitted by ``Detector`` with the source site's features as ``y``."""

    name = "abstraction"

    def fit(self, x, y=None, progress=False):
        if y is None:
            raise AnomalyError(
                "the abstraction detector needs the previous site's features as y=, one row per x"
            )
        src_m, dst_m = _moments(y), _moments(x)
        a, t = _standardise(y, src_m), _standardise(x, dst_m)
        hidden = int(self.options.get("hidden", 0))
        self.tensors = {"src_mu": src_m["mu"], "src_sd": src_m["sd"], **dst_m}
        if hidden <= 0:
            a1 = torch.cat([a, torch.ones(len(a), 1)], 1).double()
            lam = float(self.options.get("l2", 1e-2)) * len(a)
            w = torch.linalg.solve(
                a1.T @ a1 + lam * torch.eye(a1.shape[1], dtype=a1.dtype), a1.T @ t.double()
            )
            self.tensors["w"] = w.float()
        else:
            torch.manual_seed(0)
            net = torch.nn.Sequential(
                torch.nn.Linear(a.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, t.shape[1])
            )
            opt = torch.optim.Adam(net.parameters(), lr=3e-3)
            for _ in range(int(self.options.get("steps", 500))):
                loss = (net(a) - t).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.tensors.update({f"mlp.{n}": p.detach().clone() for n, p in net.state_dict().items()})
        self.tensors["err_mean"] = self._err(a, t).mean().reshape(1).clamp_min(1e-9)

    def _err(self, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if "w" in self.tensors:
            pred = torch.cat([a, torch.ones(len(a), 1)], 1) @ self.tensors["w"]
        else:
            w1, b1 = self.tensors["mlp.0.weight"], self.tensors["mlp.0.bias"]
            w2, b2 = self.tensors["mlp.2.weight"], self.tensors["mlp.2.bias"]
            with torch.no_grad():
                pred = torch.nn.functional.gelu(a @ w1.T + b1) @ w2.T + b2
        return (pred - t).pow(2).sum(-1)

    def score_pair(self, x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        a = (src.float() - self.tensors["src_mu"]) / self.tensors["src_sd"]
        return self._err(a, _standardise(x, self.tensors)) / self.tensors["err_mean"]
