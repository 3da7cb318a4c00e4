"""What a config field allows, as data: `Rule(ok, allowed)` and the common kinds (counts, ranges, names), and
`check_rules(config, rules)`. The model files declare their sections' rules with these (`System.config_rules`);
`synth.config_check` validates a whole config with them. This module imports nothing of synth."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field allows: `ok(value)` and the words that say so in an error."""

    ok: Callable[[Any], bool]
    allowed: str


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum: int | None = None, maximum: int | None = None) -> Rule:
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" <= {maximum}"
    return Rule(lambda v: is_int(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum),
                f"an integer{lo}{'' if not (lo and hi) else ' and'}{hi}")


def number(minimum: float | None = None, maximum: float | None = None, *, above: float | None = None,
           below: float | None = None) -> Rule:
    words = [f">= {minimum}" if minimum is not None else "", f"> {above}" if above is not None else "",
             f"<= {maximum}" if maximum is not None else "", f"< {below}" if below is not None else ""]
    words = [w for w in words if w]

    def ok(v) -> bool:
        return (_is_number(v) and (minimum is None or v >= minimum) and (above is None or v > above)
                and (maximum is None or v <= maximum) and (below is None or v < below))

    return Rule(ok, "a finite number" + (" " + " and ".join(words) if words else ""))


def one_of(*values) -> Rule:
    return Rule(lambda v: v in values, "one of " + ", ".join(repr(x) for x in values))


BOOLEAN = Rule(lambda v: isinstance(v, bool), "True or False")
COUNT = integer(1)  # batch sizes, intervals, step counts, channel widths
PROBABILITY = number(0.0, below=1.0)  # Adam betas, EMA decay
NON_NEGATIVE = number(0.0)  # loss weights, time budgets


def _lookup(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) and not hasattr(node, "keys"):
            return _ABSENT
        if part not in node:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()


def check_rules(config, rules: Mapping[str, Rule]) -> list[str]:
    """`config.<field> = <value>: must be ...` for every present field its rule rejects."""
    problems = []
    for field, rule in rules.items():
        value = _lookup(config, field)
        if value is not _ABSENT and not rule.ok(value):
            problems.append(f"config.{field} = {value!r}: must be {rule.allowed}")
    return problems


__all__ = ["BOOLEAN", "COUNT", "NON_NEGATIVE", "PROBABILITY", "Rule", "check_rules", "integer", "number", "one_of"]
