"""Gate expressions: the syntax of ``gates:`` in ``kyklos.yaml``.

A gate compares one metric of the candidate with a number, or with an arithmetic expression of
numbers and the champion's metrics::

    roc_auc >= 0.80
    roc_auc >= champion.roc_auc - 0.005
    rmse <= champion.rmse * 1.02

Parsing is pure (``ast``, never ``eval``); evaluation lives in :mod:`kyklos.registry.gate`.

>>> g = parse_gate("roc_auc >= champion.roc_auc - 0.005")
>>> g.metric, g.op, sorted(g.champion_metrics)
('roc_auc', '>=', ['roc_auc'])
>>> g.evaluate({"roc_auc": 0.81}, {"roc_auc": 0.812})
True
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["GateExpr", "GateSyntaxError", "parse_gate"]

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[float, float], bool]]] = {
    ast.GtE: (">=", operator.ge),
    ast.Gt: (">", operator.gt),
    ast.LtE: ("<=", operator.le),
    ast.Lt: ("<", operator.lt),
}
_ARITH: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class GateSyntaxError(ValueError):
    """The gate text is not ``metric OP expression``."""


@dataclass(frozen=True)
class GateExpr:
    """A parsed gate: ``metric op rhs`` where ``rhs`` may use ``champion.<metric>``."""

    text: str
    metric: str
    op: str
    rhs: ast.expr = field(repr=False, compare=False)
    champion_metrics: frozenset[str] = frozenset()

    @property
    def relative(self) -> bool:
        """True when the gate compares against the champion."""
        return bool(self.champion_metrics)

    def threshold(self, champion: Mapping[str, float] | None) -> float | None:
        """The right-hand side's value, or None when it needs a champion and there is none."""
        if self.relative and champion is None:
            return None
        return _eval(self.rhs, champion or {})

    def evaluate(
        self, candidate: Mapping[str, float], champion: Mapping[str, float] | None = None
    ) -> bool | None:
        """True/False, or None when the gate is relative and there is no champion to compare."""
        limit = self.threshold(champion)
        if limit is None:
            return None
        compare = next(fn for sym, fn in _COMPARE.values() if sym == self.op)
        return compare(float(candidate[self.metric]), limit)


def parse_gate(text: str) -> GateExpr:
    """Parse one gate; raise :class:`GateSyntaxError` with the reason when it is malformed."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise GateSyntaxError(f"not a valid expression ({exc.msg})") from None
    if not (isinstance(tree, ast.Compare) and len(tree.ops) == 1):
        raise GateSyntaxError("expected one comparison like 'roc_auc >= 0.8'")
    op_type = type(tree.ops[0])
    if op_type not in _COMPARE:
        raise GateSyntaxError("the comparison must be one of >=, >, <=, <")
    if not isinstance(tree.left, ast.Name):
        raise GateSyntaxError("the left side must be a metric name, like 'roc_auc'")
    champion: set[str] = set()
    _check(tree.comparators[0], champion)
    return GateExpr(
        text=text.strip(),
        metric=tree.left.id,
        op=_COMPARE[op_type][0],
        rhs=tree.comparators[0],
        champion_metrics=frozenset(champion),
    )


def _check(node: ast.expr, champion: set[str]) -> None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _check(node.operand, champion)
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        _check(node.left, champion)
        _check(node.right, champion)
        return
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "champion"
    ):
        champion.add(node.attr)
        return
    raise GateSyntaxError(
        "the right side may use numbers, + - * / and champion.<metric> only, "
        f"found {ast.unparse(node)!r}"
    )


def _eval(node: ast.expr, champion: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)  # checked by _check at parse time
        return float(node.value)
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, champion)
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](_eval(node.left, champion), _eval(node.right, champion))
    assert isinstance(node, ast.Attribute)
    return float(champion[node.attr])
