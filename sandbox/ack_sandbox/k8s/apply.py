"""Server-side apply and ``metadata.managedFields`` (a compact take on sigs.k8s.io/structured-merge-diff).

Field paths are tuples of fieldsV1 path elements: ``f:<field>``, ``k:<json key>`` (list items with a merge
key, e.g. containers by name), ``v:<json value>`` (items of set lists such as finalizers). Lists without a key
are atomic: the list is one field. Identity metadata (name, uid, resourceVersion...) and, for kinds with a
status subresource, ``status`` are never owned through the main resource.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.patch import SET_LISTS, merge_key

Path = tuple[str, ...]
_IDENTITY = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
)


def _key_of(item: dict[str, Any], key: str, path: Path, field: str) -> str:
    ident: dict[str, Any] = {key: item.get(key)}
    if field == "ports" and "protocol" in item:
        ident["protocol"] = item["protocol"]
    return "k:" + json.dumps(ident, separators=(",", ":"), sort_keys=True)


def fields_of(obj: dict[str, Any], status_subresource: bool, subresource: str | None = None) -> set[Path]:
    """The set of field paths an object (or applied configuration) sets."""
    out: set[Path] = set()
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    md = {k: v for k, v in (body.pop("metadata", None) or {}).items() if k not in _IDENTITY}
    if subresource == "status":
        body = {"status": body.get("status")} if body.get("status") is not None else {}
        md = {}
    elif status_subresource:
        body.pop("status", None)
    if md:
        body["metadata"] = md
    _walk(body, (), (), out)
    return out


def _walk(value: Any, path: Path, names: tuple[str, ...], out: set[Path]) -> None:
    for k, v in value.items():
        p = path + (f"f:{k}",)
        if isinstance(v, dict) and v:
            _walk(v, p, names + (k,), out)
        elif isinstance(v, list) and v and k in SET_LISTS and all(not isinstance(x, (dict, list)) for x in v):
            for x in v:
                out.add(p + ("v:" + json.dumps(x, separators=(",", ":")),))
        elif isinstance(v, list) and v and merge_key(names, k) and all(isinstance(x, dict) for x in v):
            key = merge_key(names, k)
            for item in v:
                ip = p + (_key_of(item, key, names, k),)
                out.add(ip)
                _walk(item, ip, names + (k,), out)
        else:
            out.add(p)


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            cur = cur.get(rest) if isinstance(cur, dict) else None
        elif kind == "k":
            ident = json.loads(rest)
            cur = (
                next(
                    (x for x in cur or [] if isinstance(x, dict) and all(x.get(a) == b for a, b in ident.items())), None
                )
                if isinstance(cur, list)
                else None
            )
        elif kind == "v":
            val = json.loads(rest)
            cur = val if isinstance(cur, list) and val in cur else None
        if cur is None:
            return None
    return cur


def remove_at(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    kind, _, rest = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif kind == "k" and isinstance(parent, list):
        ident = json.loads(rest)
        parent[:] = [x for x in parent if not (isinstance(x, dict) and all(x.get(a) == b for a, b in ident.items()))]
    elif kind == "v" and isinstance(parent, list):
        val = json.loads(rest)
        parent[:] = [x for x in parent if x != val]


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for p in sorted(paths):
        node = root
        for el in p:
            node = node.setdefault(el, {})
    # A path that is itself owned and also has owned children is marked with ".".
    for p in paths:
        node = root
        for el in p:
            node = node[el]
        if node and "." not in node:
            node["."] = {}
    return root


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in (tree or {}).items():
        if k == ".":
            out.add(prefix)
            continue
        p = prefix + (k,)
        if v:
            out |= from_fields_v1(v, p)
        else:
            out.add(p)
    return out


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj.setdefault("metadata", {}).setdefault("managedFields", [])


def _entry_paths(e: dict[str, Any]) -> set[Path]:
    return from_fields_v1(e.get("fieldsV1") or {})


def _set_entry(
    obj: dict[str, Any],
    manager: str,
    operation: str,
    api_version: str,
    subresource: str | None,
    paths: set[Path],
    now: str,
) -> None:
    entries = _entries(obj)
    entries[:] = [
        e
        for e in entries
        if not (e.get("manager") == manager and e.get("operation") == operation and e.get("subresource") == subresource)
    ]
    if paths:
        e: dict[str, Any] = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(paths),
        }
        if subresource:
            e["subresource"] = subresource
        entries.append(e)


def _strip_paths(obj: dict[str, Any], keep_manager: tuple[str, str, str | None] | None, paths: set[Path]) -> None:
    """Remove ``paths`` from every entry except ``keep_manager``; drop entries left empty."""
    kept = []
    for e in _entries(obj):
        ident = (e.get("manager"), e.get("operation"), e.get("subresource"))
        if ident != keep_manager:
            mine = _entry_paths(e)
            left = {p for p in mine if not any(p[: len(q)] == q for q in paths)}
            if left != mine:
                if not left:
                    continue
                e = {**e, "fieldsV1": to_fields_v1(left)}
        kept.append(e)
    obj["metadata"]["managedFields"] = kept


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    subresource: str | None,
    status_subresource: bool,
    now: str,
) -> None:
    """An Update operation: ``manager`` takes the fields it changed; removed fields lose all owners."""
    new_f = fields_of(new, status_subresource, subresource)
    if old is None:
        changed = new_f
        removed: set[Path] = set()
    else:
        old_f = fields_of(old, status_subresource, subresource)
        changed = {p for p in new_f if value_at(old, p) != value_at(new, p) or p not in old_f}
        removed = old_f - new_f
    if not changed and not removed:
        return
    mine = next(
        (
            e
            for e in _entries(new)
            if (e.get("manager"), e.get("operation"), e.get("subresource")) == (manager, "Update", subresource)
        ),
        None,
    )
    owned = (_entry_paths(mine) if mine else set()) | changed
    owned -= removed
    _strip_paths(new, None, removed)
    _strip_paths(new, (manager, "Update", subresource), changed)
    _set_entry(new, manager, "Update", api_version, subresource, owned, now)


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    api_version: str,
    force: bool,
    status_subresource: bool,
    subresource: str | None,
    now: str,
) -> dict[str, Any]:
    """Merge ``applied`` into ``live`` as ``manager`` and return the new object, or raise 409 on conflicts."""
    applied_f = fields_of(applied, status_subresource, subresource)
    if live is None:
        result = copy.deepcopy(applied)
        result.setdefault("metadata", {})["managedFields"] = []
        _set_entry(result, manager, "Apply", api_version, subresource, applied_f, now)
        return result
    result = copy.deepcopy(live)
    me = (manager, "Apply", subresource)
    conflicts: dict[str, list[Path]] = {}
    for e in _entries(result):
        if (e.get("manager"), e.get("operation"), e.get("subresource")) == me:
            continue
        theirs = _entry_paths(e)
        for p in applied_f & theirs:
            a, b = value_at(applied, p), value_at(live, p)
            if a != b and not isinstance(a, (dict,)) and not p[-1].startswith("k:"):
                conflicts.setdefault(e.get("manager", ""), []).append(p)
    if conflicts and not force:
        raise _conflict_error(conflicts, live, api_version)
    mine_before = next(
        (
            _entry_paths(e)
            for e in _entries(result)
            if (e.get("manager"), e.get("operation"), e.get("subresource")) == me
        ),
        set(),
    )
    others = set().union(
        *[
            _entry_paths(e)
            for e in _entries(result)
            if (e.get("manager"), e.get("operation"), e.get("subresource")) != me
        ]
        or [set()]
    )
    body = {k: v for k, v in applied.items() if k != "metadata"}
    if status_subresource and subresource != "status":
        body.pop("status", None)
    merged = _apply_merge(result, body, ())
    md_applied = {k: v for k, v in (applied.get("metadata") or {}).items() if k not in _IDENTITY}
    merged["metadata"] = _apply_merge(merged.get("metadata") or {}, md_applied, ("metadata",))
    for p in sorted(mine_before - applied_f - others, key=len, reverse=True):
        remove_at(merged, p)
    if force:
        _strip_paths(merged, me, {p for ps in conflicts.values() for p in ps})
    _set_entry(merged, manager, "Apply", api_version, subresource, applied_f, now)
    return merged


def _apply_merge(live: Any, applied: Any, names: tuple[str, ...]) -> Any:
    if not isinstance(applied, dict) or not isinstance(live, dict):
        return copy.deepcopy(applied)
    out = dict(live)
    for k, v in applied.items():
        cur = out.get(k)
        if isinstance(v, dict) and isinstance(cur, dict):
            out[k] = _apply_merge(cur, v, names + (k,))
        elif isinstance(v, list) and isinstance(cur, list):
            key = merge_key(names, k)
            if k in SET_LISTS:
                out[k] = cur + [x for x in v if x not in cur]
            elif key and all(isinstance(x, dict) for x in v + cur):
                merged = [copy.deepcopy(x) for x in cur]
                for item in v:
                    idx = next((i for i, x in enumerate(merged) if x.get(key) == item.get(key)), None)
                    if idx is None:
                        merged.append(copy.deepcopy(item))
                    else:
                        merged[idx] = _apply_merge(merged[idx], item, names + (k,))
                out[k] = merged
            else:
                out[k] = copy.deepcopy(v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _dotted(path: Path) -> str:
    parts = []
    for el in path:
        kind, _, rest = el.partition(":")
        parts.append(f".{rest}" if kind == "f" else f"[{rest.replace(':', '=').strip('{}')}]")
    return "".join(parts)


def _conflict_error(conflicts: dict[str, list[Path]], live: dict[str, Any], api_version: str) -> ApiError:
    n = sum(len(v) for v in conflicts.values())
    lines, causes = [], []
    for mgr, paths in conflicts.items():
        for p in paths:
            causes.append(
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{mgr}" using {api_version}',
                    "field": _dotted(p),
                }
            )
        if len(paths) == 1 and len(conflicts) == 1:
            lines.append(f'conflict with "{mgr}" using {api_version}: {_dotted(paths[0])}')
        else:
            lines.append(f'conflicts with "{mgr}" using {api_version}:\n' + "\n".join(f"- {_dotted(p)}" for p in paths))
    msg = f"Apply failed with {n} conflict{'s' if n > 1 else ''}: " + "\n".join(lines)
    md = live.get("metadata") or {}
    return ApiError(409, "Conflict", msg, {"name": md.get("name", ""), "kind": live.get("kind", ""), "causes": causes})
