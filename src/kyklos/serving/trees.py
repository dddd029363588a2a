"""A fitted ``HistGradientBoostingClassifier``/``Regressor`` evaluated with numpy, for the small
batches of the serving hot path, checked against scikit-learn before it is used.

Through scikit-learn one ``predict_proba`` call costs ~0.5-0.6 ms for one row as for 32 (the
flights model, 96 trees): input checks, then a Python loop over the trees, each a Cython/OpenMP
call of a few µs. :func:`compile_trees` reads the fitted node arrays once (``_predictors``) and
evaluates all the trees together with a handful of array operations, ~25 µs for one row:

- every split node compares one input column with its ``num_threshold``, all nodes of all trees
  in one vectorised comparison. A missing value (NaN) goes where the node sends it
  (``missing_go_to_left``): nodes sending it left read a copy of the input with NaN replaced by
  -inf (``-inf <= threshold``), the others read NaN itself (``NaN <= threshold`` is false);
- the leaf each tree reaches follows from those comparisons without walking the tree
  (QuickScorer, Lucchese et al., SIGIR 2015): number each tree's leaves left to right; a node
  whose comparison fails (the row goes right) rules out the leaves of its left subtree; the
  reached leaf is the leftmost one no node rules out, i.e. the lowest bit of the AND of one
  32- or 64-bit mask per failing node (every tree padded to the same number of entries, so
  the AND is one ``reduce``). Trees with more than 64 leaves are walked level by level instead
  (one step of every tree per iteration, as many iterations as the deepest leaf);
- leaf values are added to ``_baseline_prediction`` one iteration after the other, in the order
  scikit-learn adds them (``np.add.accumulate``), so the raw predictions are the same floats;
  probabilities and predictions come from the estimator's own loss (its link function), labels
  from ``raw > 0`` (binary) or the argmax (multiclass), as ``predict`` computes them.

Native categorical features (``categorical_features``), an estimator that encodes its own input
(``_preprocessor``), other estimators and subclasses are not compiled: :func:`compile_trees`
returns None with the reason and scikit-learn keeps serving. It also returns None when the
evaluator disagrees with scikit-learn on probe rows built from the trees' own thresholds (every
threshold exactly, the next float above it, missing values, values beyond the ranges): labels
must be identical and probabilities within 1e-12 relative. At predict time a matrix of another
width or dtype makes the evaluator return None, and the caller asks scikit-learn, which converts
it or raises its own error. Infinite values are compared like any number, as scikit-learn does.

Measured on the flights model (96 trees of 31 leaves, 2 cores shared with other processes, one
OpenMP thread), ``predict_proba`` on the transformed matrix: scikit-learn ~0.5 ms for 1 row,
~0.6 ms for 64, ~0.75 ms for 128, ~1 ms for 256; this evaluator ~25 µs, ~0.33 ms, ~0.7 ms and
~1.4 ms. It costs ~5-10 µs more per row than scikit-learn, which costs ~0.5 ms more per call:
they cross near 128 rows. :data:`MAX_ROWS` is where the serving path stops using it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_ROWS", "CompiledTrees", "compile_trees"]

log = logging.getLogger("kyklos.serving")

#: Largest batch the serving path evaluates with numpy (scikit-learn wins on bigger ones).
MAX_ROWS = 64

_RTOL = 1e-12
_PROBE_CHUNK = 64


@dataclass(frozen=True)
class _BitmaskForest:
    """QuickScorer layout: ``splits`` entries per tree, trees one after the other; a tree with
    fewer split nodes is padded with entries that never rule a leaf out."""

    column: np.ndarray  # intp: row of the augmented input read by each entry
    threshold: np.ndarray  # float64
    mask: np.ndarray  # uint32/uint64: leaves still reachable when the row goes right
    ones: Any  # np.uint32 / np.uint64 with every bit set
    one: Any  # 1 of that type
    splits: int
    leaf_offset: np.ndarray  # intp (trees, 1): first leaf of each tree in ``value``
    value: np.ndarray  # float64: leaf values, tree by tree, left to right

    def leaf_values(self, augmented: np.ndarray) -> np.ndarray:
        """``(trees, rows)`` values of the leaves reached, for the augmented input
        ``(2 * width + 1, rows)`` (see :meth:`CompiledTrees.raw`)."""
        rows = augmented.shape[1]
        goes_left = augmented.take(self.column, axis=0) <= self.threshold[:, None]
        kept = goes_left.view(np.uint8) * self.ones  # all bits set where the row goes left
        kept |= self.mask[:, None]
        reached = np.bitwise_and.reduce(kept.reshape(-1, self.splits, rows), axis=1)
        lowest = reached & (~reached + self.one)
        rank = np.frexp(lowest.astype(np.float64))[1] - 1
        values: np.ndarray = self.value.take(rank + self.leaf_offset)
        return values


@dataclass(frozen=True)
class _LevelForest:
    """All trees' nodes in flat arrays; leaves point to themselves so every walk takes
    ``depth`` steps."""

    column: np.ndarray  # intp, as in _BitmaskForest (0 for leaves)
    threshold: np.ndarray  # float64 (0 for leaves)
    child: np.ndarray  # intp: child[2 * node] left, child[2 * node + 1] right
    roots: np.ndarray  # intp (trees, 1)
    value: np.ndarray  # float64 per node
    depth: int

    def leaf_values(self, augmented: np.ndarray) -> np.ndarray:
        rows = augmented.shape[1]
        flat = augmented.ravel()
        node = np.repeat(self.roots, rows, axis=1)
        row = np.arange(rows)
        for _ in range(self.depth):
            x = flat.take(self.column.take(node) * rows + row)
            goes_right = ~(x <= self.threshold.take(node))
            node = self.child.take(2 * node + goes_right)
        return self.value.take(node)


class CompiledTrees:
    """The trees of a fitted HistGradientBoosting estimator as numpy operations.

    Every method takes the estimator's input matrix (float64, NaN for missing) and returns None
    when scikit-learn must decide (another width or dtype, no rows).
    """

    def __init__(
        self,
        forest: _BitmaskForest | _LevelForest,
        *,
        width: int,
        baseline: np.ndarray,
        loss: Any,
        classes: np.ndarray | None,
    ) -> None:
        self.forest = forest
        self.width = width
        self.baseline = baseline  # (trees per iteration,)
        self.classes = classes
        self._loss = loss
        #: largest batch the serving path hands to :meth:`predict_proba`/:meth:`predict`
        self.max_rows = MAX_ROWS

    def raw(self, X: np.ndarray) -> np.ndarray | None:
        """``(rows, trees per iteration)`` raw predictions, as ``_raw_predict`` computes them."""
        if X.ndim != 2 or X.shape[1] != self.width or X.dtype != np.float64 or not len(X):
            return None
        rows = X.shape[0]
        # X, X with NaN as -inf (nodes sending missing values left), a row of -inf (padding)
        augmented = np.concatenate(
            (X.T, np.where(np.isnan(X.T), -np.inf, X.T), np.full((1, rows), -np.inf)), axis=0
        )
        values = self.forest.leaf_values(augmented)  # (iterations * k, rows)
        k = len(self.baseline)
        terms = np.empty((values.shape[0] // k + 1, k, rows), dtype=np.float64)
        terms[0] = (0.0 + self.baseline)[:, None]
        terms[1:] = values.reshape(-1, k, rows)
        total: np.ndarray = np.add.accumulate(terms, axis=0)[-1]  # in scikit-learn's order
        return total.T

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        """Class probabilities ``(rows, classes)`` of a classifier."""
        raw = self.raw(X)
        return None if raw is None else np.asarray(self._loss.predict_proba(raw))

    def predict(self, X: np.ndarray) -> np.ndarray | None:
        """Class labels of a classifier, values of a regressor."""
        raw = self.raw(X)
        if raw is None:
            return None
        if self.classes is None:
            return np.asarray(self._loss.link.inverse(raw.ravel()))
        encoded = (raw.ravel() > 0).astype(np.intp) if raw.shape[1] == 1 else raw.argmax(axis=1)
        return np.asarray(self.classes[encoded])


def compile_trees(estimator: Any) -> tuple[CompiledTrees | None, str | None]:
    """``(trees, None)`` when ``estimator`` (a fitted HistGradientBoosting model fed a numpy
    matrix) is evaluated exactly by :class:`CompiledTrees`; ``(None, reason)`` otherwise."""
    try:
        compiled = _compile(estimator)
        if isinstance(compiled, str):
            log.debug("trees not compiled: %s", compiled)
            return None, compiled
        disagreement = _disagreement(estimator, compiled)
    except Exception as exc:  # an unexpected estimator: scikit-learn keeps serving it
        reason = f"cannot read the fitted trees: {type(exc).__name__}: {exc}"
        log.debug("trees not compiled: %s", reason)
        return None, reason
    if disagreement is not None:
        reason = f"the numpy trees disagree with scikit-learn: {disagreement}"
        log.warning("%s: not used", reason)
        return None, reason
    return compiled, None


def _compile(estimator: Any) -> CompiledTrees | str:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = type(estimator)
    if kind not in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        return f"{kind.__name__} is not a HistGradientBoosting estimator"
    if not hasattr(estimator, "_predictors"):
        return "the estimator is not fitted"
    if hasattr(estimator, "feature_names_in_"):
        return "the estimator was fitted on named columns (a DataFrame)"
    categorical = getattr(estimator, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        return "native categorical features (categorical_features) are not replayed"
    if getattr(estimator, "_preprocessor", None) is not None:
        return "the estimator encodes its own categorical columns (categorical_features)"
    k = int(estimator.n_trees_per_iteration_)
    iterations = estimator._predictors
    if not iterations or any(len(trees) != k for trees in iterations):
        return "unexpected number of trees per iteration"
    nodes = [predictor.nodes for trees in iterations for predictor in trees]
    if any(tree["is_categorical"].any() for tree in nodes):
        return "the trees have categorical splits"
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    if len(baseline) != k:
        return "unexpected baseline prediction"
    loss = estimator._loss
    classes: np.ndarray | None = None
    if kind is HistGradientBoostingClassifier:
        classes = np.asarray(estimator.classes_)
        if not callable(getattr(loss, "predict_proba", None)):
            return f"the loss {type(loss).__name__} gives no probabilities"
    elif k != 1 or not callable(getattr(getattr(loss, "link", None), "inverse", None)):
        return f"the loss {type(loss).__name__} has no inverse link"
    width = int(estimator.n_features_in_)
    leaves = max(int(tree["is_leaf"].sum()) for tree in nodes)
    forest = _bitmask_forest(nodes, width) if leaves <= 64 else _level_forest(nodes, width)
    return CompiledTrees(forest, width=width, baseline=baseline, loss=loss, classes=classes)


def _columns(tree: np.ndarray, width: int) -> np.ndarray:
    """The column of the augmented input each node reads (the NaN -> -inf copy when missing
    values go left)."""
    feature = tree["feature_idx"].astype(np.intp)
    return np.asarray(feature + width * (tree["missing_go_to_left"] != 0), dtype=np.intp)


def _leaf_ranks(tree: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, stop)``: the leaves under each node are ranks ``first..stop-1``, leaves ranked
    left to right."""
    left = tree["left"].astype(np.intp)
    right = tree["right"].astype(np.intp)
    is_leaf = tree["is_leaf"] != 0
    first = np.full(len(tree), -1, dtype=np.intp)
    stop = np.full(len(tree), -1, dtype=np.intp)
    rank = 0
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        node, children_done = stack.pop()
        if is_leaf[node]:
            first[node], stop[node] = rank, rank + 1
            rank += 1
        elif children_done:
            first[node], stop[node] = first[left[node]], stop[right[node]]
        else:
            stack += [(node, True), (int(right[node]), False), (int(left[node]), False)]
    if rank != int(is_leaf.sum()) or (first < 0).any():
        raise ValueError("a tree has unreachable nodes")
    return first, stop


def _bitmask_forest(nodes: list[np.ndarray], width: int) -> _BitmaskForest:
    splits = max(1, max(int((tree["is_leaf"] == 0).sum()) for tree in nodes))
    size = len(nodes) * splits
    column = np.full(size, 2 * width, dtype=np.intp)  # the row of -inf: always goes left
    threshold = np.zeros(size, dtype=np.float64)
    leaves_max = max(int((tree["is_leaf"] != 0).sum()) for tree in nodes)
    dtype = np.uint32 if leaves_max <= 32 else np.uint64
    ones = dtype(np.iinfo(dtype).max)
    mask = np.full(size, ones, dtype=dtype)
    offsets, values = [], []
    leaves = 0
    for t, tree in enumerate(nodes):
        first, stop = _leaf_ranks(tree)
        split = np.flatnonzero(tree["is_leaf"] == 0)
        at = slice(t * splits, t * splits + len(split))
        column[at] = _columns(tree, width)[split]
        threshold[at] = tree["num_threshold"][split]
        left = tree["left"][split].astype(np.intp)
        width_of, first_of = stop[left] - first[left], first[left]
        mask[at] = [
            int(ones) ^ (((1 << int(w)) - 1) << int(f))
            for w, f in zip(width_of, first_of, strict=True)
        ]
        order = np.flatnonzero(tree["is_leaf"] != 0)
        values.append(tree["value"][order[np.argsort(first[order])]].astype(np.float64))
        offsets.append(leaves)
        leaves += len(order)
    return _BitmaskForest(
        column=column,
        threshold=threshold,
        mask=mask,
        ones=ones,
        one=dtype(1),
        splits=splits,
        leaf_offset=np.asarray(offsets, dtype=np.intp)[:, None],
        value=np.concatenate(values),
    )


def _level_forest(nodes: list[np.ndarray], width: int) -> _LevelForest:
    sizes = [len(tree) for tree in nodes]
    offset = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes).astype(np.intp)
    flat = np.concatenate(nodes)
    leaf = flat["is_leaf"] != 0
    own = np.arange(len(flat), dtype=np.intp)
    column = np.concatenate([_columns(tree, width) for tree in nodes])
    threshold = flat["num_threshold"].astype(np.float64)
    left = np.where(leaf, own, flat["left"].astype(np.intp) + offset)
    right = np.where(leaf, own, flat["right"].astype(np.intp) + offset)
    column[leaf] = 0
    threshold[leaf] = 0.0
    return _LevelForest(
        column=column,
        threshold=threshold,
        child=np.stack((left, right), axis=1).ravel(),
        roots=np.cumsum([0, *sizes[:-1]]).astype(np.intp)[:, None],
        value=flat["value"].astype(np.float64),
        depth=int(flat["depth"].max()),
    )


# -- the check at load -----------------------------------------------------------------------------
def _probe(estimator: Any, width: int) -> np.ndarray:
    """Rows that exercise every split: each column cycles through the thresholds it is split
    on, the next float above each, NaN, 0, 1, values beyond the range and infinities, columns
    shuffled independently (fixed seed); at most 4,096 rows."""
    nodes = np.concatenate([p.nodes for trees in estimator._predictors for p in trees])
    split = nodes[nodes["is_leaf"] == 0]
    rng = np.random.default_rng(0)
    candidates = []
    for feature in range(width):
        values = split["num_threshold"][split["feature_idx"] == feature].astype(np.float64)
        values = np.unique(values[np.isfinite(values)])
        low, high = (values[0], values[-1]) if len(values) else (0.0, 1.0)
        extra = [np.nan, 0.0, 1.0, low - 1.0, high + 1.0, np.inf, -np.inf, np.nan]
        candidates.append(np.concatenate((values, np.nextafter(values, np.inf), np.asarray(extra))))
    rows = min(max(len(c) for c in candidates), 4096)
    probe = np.empty((rows, width), dtype=np.float64)
    for j, values in enumerate(candidates):
        probe[:, j] = rng.permutation(np.resize(values, rows))
    probe[0] = np.nan  # a row missing everywhere
    return probe


def _disagreement(estimator: Any, compiled: CompiledTrees) -> str | None:
    """None when ``compiled`` gives scikit-learn's labels and probabilities (or values) on the
    probe rows; else what differs."""
    probe = _probe(estimator, compiled.width)
    for start in range(0, len(probe), _PROBE_CHUNK):
        rows = probe[start : start + _PROBE_CHUNK]
        labels = compiled.predict(rows)
        if labels is None:
            return "the probe rows were refused"
        expected = np.asarray(estimator.predict(rows))
        if compiled.classes is not None:
            if not np.array_equal(labels, expected):
                return f"labels differ on probe rows {start}..{start + len(rows) - 1}"
            ours = compiled.predict_proba(rows)
            expected = np.asarray(estimator.predict_proba(rows), dtype=np.float64)
            what = "probabilities"
        else:
            ours, what = labels, "values"
        if ours is None or ours.shape != expected.shape:
            return f"{what} have another shape"
        off = np.abs(ours - expected) > _RTOL * np.abs(expected)
        if off.any() or not np.array_equal(np.isnan(ours), np.isnan(expected)):
            worst = float(np.nanmax(np.abs(ours - expected)))
            return f"{what} differ by up to {worst:.3g} on probe rows from {start}"
    return None
