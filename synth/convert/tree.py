"""Nested-dict helpers shared by the checkpoint converters."""

from __future__ import annotations

from typing import Any, Iterator, Mapping


def leaf_paths(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, leaf) for every leaf of a nested mapping, depth first."""
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from leaf_paths(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    """tree[path[0]]...[path[-1]] = value, creating the intermediate dicts."""
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def check_fit(header: str, noun: str, missing: list[str], unused: list[str], mismatched: list[str]) -> None:
    """Raises one ValueError listing every missing, unused and misshapen entry (`noun`: 'keys', 'variables')."""
    if not (missing or unused or mismatched):
        return
    lines = [header]
    if missing:
        lines.append(f"  missing {noun} ({len(missing)}): {', '.join(missing)}")
    if unused:
        lines.append(f"  unused {noun} ({len(unused)}): {', '.join(unused)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}):")
        lines.extend(f"    {m}" for m in mismatched)
    raise ValueError("\n".join(lines))
