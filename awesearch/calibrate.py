"""Calibrated scores: the probability that the query is spoken at a hit (issue 8, point 3).

A logistic model maps the second stage's evidence for one candidate to P(query spoken there):

    features  cosine          first-stage AWE score of the best window in the region
              llr_per_token   alignment log-likelihood ratio / target tokens (awesearch/verify.py)
              worst_token     the lowest single-token LLR (a missing phoneme or word boundary)
              llr             the total LLR
              log_tokens      log of the number of target tokens (longer queries accumulate more LLR)
              rel_cosine      cosine minus the query's background cosine in this archive
              rel_llr_per_token  llr_per_token minus the query's background llr_per_token

The background of a query is how it scores elsewhere in the archive being searched: the median of its
candidate regions' evidence (most candidates of a query are not it), shrunk towards a prior fitted with
the calibration (``background_prior``, weight ``BACKGROUND_PRIOR_REGIONS``), so an archive with few
candidates borrows the prior. A long name whose true hits sit far above its own background is believed
even when its absolute per-token evidence is modest on an unfamiliar voice.

The weights of the first four are constrained to be >= 0, so the probability is monotone in every
score: more evidence never lowers it. One model per query kind ("text": text and fused queries whose words
CMUdict knows, "short": those of at most SHORT_PHONEMES phonemes (a perfect alignment of three phonemes is
weaker evidence than one of seven), "name": those with a word it does not know, whose target is g2p's guess,
"audio": query by example, whose target is the head's own decoding of the example) is fitted by
``python -m awesearch.train.fit_calibration`` on an archive of held-out synthetic voices (never on
real evaluation speech, never on SVOX pico or piper voices), and shipped as assets/calibration-v2.json
(magic + version; refused with a clear error on mismatch). It also carries the constant offsets that
move aligned phoneme edges to word edges, measured on the same archive.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import CheckpointError

MAGIC = "awesearch-calibration"
VERSION = 2  # 2: background-relative features and their priors
FEATURES = ("cosine", "llr_per_token", "worst_token", "llr", "log_tokens", "rel_cosine", "rel_llr_per_token")
MONOTONE = (True, True, True, True, False, True, True)  # weight >= 0: the probability never falls as this evidence grows
BACKGROUND_FEATURES = ("cosine", "llr_per_token")  # the features a background is taken of (rel_* are x - background)
BACKGROUND_PRIOR_REGIONS = 8.0  # the prior counts as this many candidate regions in the shrunk background
DEFAULT_PATH = Path(__file__).parent / "assets" / "calibration-v2.json"
KINDS = ("text", "short", "name", "audio")  # "short": at most SHORT_PHONEMES phonemes; "name": a word CMUdict lacks
SHORT_PHONEMES = 3  # a query this short matches parts of longer words and accented neighbours: its own model


@dataclass
class LogisticCalibrator:
    """p = sigmoid(bias + sum_i weight_i * (x_i - mean_i) / std_i)."""

    weights: list[float]
    bias: float
    mean: list[float]
    std: list[float]

    def probability(self, x: np.ndarray) -> np.ndarray:
        """x: [n, len(FEATURES)] -> [n] probabilities in [0, 1]."""
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        logit = z @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))


@dataclass
class Calibration:
    models: dict[str, LogisticCalibrator]  # by query kind
    start_offset_s: float = 0.0  # added to the aligned first-phoneme time to get the word's start
    end_offset_s: float = 0.0  # added to the aligned last-phoneme end to get the word's end
    fitted_on: dict = field(default_factory=dict)  # provenance: archive, voices, counts, held-out scores
    background_prior: dict = field(default_factory=dict)  # kind -> typical background [cosine, llr_per_token]
    substitution_weight: float = 0.0  # share of the head's confusions in phoneme scores (verify.substitution_matrix)

    def background(self, kind: str, x: np.ndarray) -> np.ndarray:
        """The query's background [len(BACKGROUND_FEATURES)] from its candidates' features x [n, 5 or more]:
        the median over candidates, shrunk towards the prior (n regions against BACKGROUND_PRIOR_REGIONS)."""
        cols = [FEATURES.index(f) for f in BACKGROUND_FEATURES]
        prior = np.asarray(self.background_prior.get(kind, [0.0] * len(cols)), np.float64)
        n = len(x)
        if n == 0:
            return prior
        med = np.median(np.asarray(x, np.float64)[:, cols], axis=0)
        return (n * med + BACKGROUND_PRIOR_REGIONS * prior) / (n + BACKGROUND_PRIOR_REGIONS)

    def with_background(self, kind: str, x: np.ndarray) -> np.ndarray:
        """Own evidence [n, 5] -> [n, len(FEATURES)]: the rel_* columns appended."""
        x = np.asarray(x, np.float64)
        cols = [FEATURES.index(f) for f in BACKGROUND_FEATURES]
        return np.concatenate([x, x[:, cols] - self.background(kind, x)[None, :]], axis=1)

    def save(self, path: Path) -> None:
        d = {"magic": MAGIC, "version": VERSION, "features": list(FEATURES),
             "models": {k: asdict(m) for k, m in self.models.items()},
             "start_offset_s": self.start_offset_s, "end_offset_s": self.end_offset_s, "fitted_on": self.fitted_on,
             "background_prior": self.background_prior, "substitution_weight": self.substitution_weight}
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read calibration {path}: {e}") from None
        if not isinstance(d, dict) or d.get("magic") != MAGIC:
            raise CheckpointError(f"{path} is not an awesearch calibration file")
        if d.get("version") != VERSION or tuple(d.get("features", ())) != FEATURES:
            raise CheckpointError(f"calibration {path} has version {d.get('version')} / features {d.get('features')}; reinstall awesearch")
        models = {k: LogisticCalibrator(**m) for k, m in d["models"].items()}
        if set(models) != set(KINDS):
            raise CheckpointError(f"calibration {path} lacks models for {sorted(set(KINDS) - set(models))}")
        prior = d.get("background_prior", {})
        if set(prior) != set(KINDS) or any(len(v) != len(BACKGROUND_FEATURES) for v in prior.values()):
            raise CheckpointError(f"calibration {path} lacks background priors for {sorted(KINDS)}; reinstall awesearch")
        weight = d.get("substitution_weight", 0.0)
        if not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise CheckpointError(f"calibration {path} has substitution weight {weight!r}, not in [0, 1]; reinstall awesearch")
        return cls(models, d["start_offset_s"], d["end_offset_s"], d.get("fitted_on", {}), prior, float(weight))


@lru_cache(maxsize=2)
def load_calibration(path: str | None = None) -> Calibration:
    return Calibration.load(Path(path) if path else DEFAULT_PATH)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-4) -> LogisticCalibrator:
    """Maximum-likelihood logistic regression (no class re-weighting: the fitted probabilities are the
    frequencies of right candidates among the candidates the engine really scores). MONOTONE weights are
    softplus-parameterised, so they stay >= 0 and L-BFGS can be used."""
    import torch

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs positive and negative examples")
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mean) / std)
    yt = torch.tensor(y)
    mono = torch.tensor(MONOTONE[: x.shape[1]])
    u = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)

    def weights() -> torch.Tensor:
        return torch.where(mono, torch.nn.functional.softplus(u), u)

    opt = torch.optim.LBFGS([u, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        w = weights()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LogisticCalibrator(weights=weights().detach().tolist(), bias=float(b.detach()), mean=mean.tolist(), std=std.tolist())
