"""TF Serving's ``--model_config_file``: a text-format ``ModelServerConfig`` protobuf, and the version policies.

Sources read: ``tensorflow_serving/config/model_server_config.proto`` (``ModelServerConfig { oneof config {
ModelConfigList model_config_list = 1; ... } }``, ``ModelConfigList { repeated ModelConfig config = 1; }``,
``ModelConfig { string name = 1; string base_path = 2; ModelType model_type = 3 (deprecated); string
model_platform = 4; FileSystemStoragePathSourceConfig.ServableVersionPolicy model_version_policy = 7;
map<string, int64> version_labels = 8; LoggingConfig logging_config = 6; }``),
``sources/storage_path/file_system_storage_path_source.proto`` (``ServableVersionPolicy { oneof policy_choice {
Latest latest = 100 (uint32 num_versions, default 1); All all = 101; Specific specific = 102 (repeated int64
versions) } }``), ``g3doc/serving_config.md`` (the text format, e.g.
``model_config_list { config { name: 'm' base_path: '/models/m' model_platform: 'tensorflow'
model_version_policy { specific { versions: 1 } } version_labels { key: 'stable' value: 1 } } }``) and
``file_system_storage_path_source.cc`` (which versions a policy aspires).

The parser is protobuf's text format as far as these messages need it: ``field: value``, ``field { ... }``
or ``field: { ... }`` (``<...>`` too), single or double quoted strings, ``#`` comments, repeated fields by
repetition, ``,``/``;`` separators. Unknown fields and bad values are errors, as ``TextFormat::Parse`` makes
them (the server then exits: ``ParseProtoTextFile`` failure is fatal in ``main.cc``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """The file is not a valid text-format ModelServerConfig (message like protobuf's parser's)."""


@dataclass
class VersionPolicy:
    """``ServableVersionPolicy``: ``latest`` (``num_versions``), ``all``, or ``specific`` (``versions``)."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def aspired(self, on_disk: list[int]) -> list[int]:
        """The versions to serve out of those on disk (ascending): FileSystemStoragePathSource's choice."""
        if self.kind == "all":
            return list(on_disk)
        if self.kind == "specific":
            wanted = set(self.versions)
            return [v for v in on_disk if v in wanted]
        return list(on_disk[-max(self.num_versions, 1) :]) if on_disk else []

    def describe(self) -> str:
        if self.kind == "specific":
            return f"specific {{ versions: {list(self.versions)} }}"
        if self.kind == "all":
            return "all {}"
        return f"latest {{ num_versions: {self.num_versions} }}"


@dataclass
class ModelConfig:
    name: str
    base_path: str
    model_platform: str = "tensorflow"
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>[{}<>:,;\[\]])
      | (?P<word>[-+]?[A-Za-z0-9_.]+)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise ConfigError(f"{line}:{pos - text.rfind(chr(10), 0, pos)}: Unexpected character {text[pos]!r}")
        pos = m.end()
        if m.group("comment") is not None:
            continue
        kind = next(k for k in ("string", "punct", "word") if m.group(k) is not None)
        out.append((kind, m.group(kind), text.count("\n", 0, m.start()) + 1))
    return out


# message name -> {field: (kind, repeated)}; kind is a message name or "string"/"int"/"enum"
_SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "ModelServerConfig": {"model_config_list": ("ModelConfigList", False), "custom_model_config": ("Any", False)},
    "ModelConfigList": {"config": ("ModelConfig", True)},
    "ModelConfig": {
        "name": ("string", False),
        "base_path": ("string", False),
        "model_type": ("enum", False),
        "model_platform": ("string", False),
        "model_version_policy": ("ServableVersionPolicy", False),
        "version_labels": ("VersionLabel", True),
        "logging_config": ("Any", False),
    },
    "ServableVersionPolicy": {"latest": ("Latest", False), "all": ("All", False), "specific": ("Specific", False)},
    "Latest": {"num_versions": ("int", False)},
    "All": {},
    "Specific": {"versions": ("int", True)},
    "VersionLabel": {"key": ("string", False), "value": ("int", False)},
}


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _parse_message(toks: list[tuple[str, str, int]], i: int, msg: str, close: str | None) -> tuple[dict, int]:
    out: dict[str, Any] = {}
    schema = _SCHEMA.get(msg)
    while i < len(toks):
        kind, value, line = toks[i]
        if close is not None and kind == "punct" and value == close:
            return out, i + 1
        if kind == "punct" and value in ",;":
            i += 1
            continue
        if kind != "word":
            raise ConfigError(f"{line}: Expected identifier, got: {value}")
        name = value
        i += 1
        if schema is not None and name not in schema:
            raise ConfigError(f'{line}: Message type "tensorflow.serving.{msg}" has no field named "{name}".')
        ftype, repeated = schema[name] if schema is not None else ("Any", True)
        has_colon = i < len(toks) and toks[i][:2] == ("punct", ":")
        if has_colon:
            i += 1
        if i >= len(toks):
            raise ConfigError(f"{line}: Unexpected end of input after {name}")
        kind, value, line = toks[i]
        if kind == "punct" and value in "{<":
            if ftype in ("string", "int", "enum"):
                raise ConfigError(f'{line}: Expected a value for "{name}", got a message')
            sub, i = _parse_message(toks, i + 1, ftype, "}" if value == "{" else ">")
            item: Any = sub
        else:
            if ftype not in ("string", "int", "enum") or not has_colon:
                raise ConfigError(f'{line}: Expected "{{", found "{value}".')
            if ftype == "string":
                if kind != "string":
                    raise ConfigError(f"{line}: Expected string, got: {value}")
                item = _unquote(value)
            elif ftype == "int":
                try:
                    item = int(value, 0)
                except ValueError:
                    raise ConfigError(f"{line}: Expected integer, got: {value}") from None
            else:
                item = value
            i += 1
        if repeated:
            out.setdefault(name, []).append(item)
        elif name in out:
            raise ConfigError(f'{line}: Non-repeated field "{name}" is specified multiple times.')
        else:
            out[name] = item
    if close is not None:
        raise ConfigError(f"Unexpected end of input: expected {close!r} to close {msg}")
    return out, i


def parse_model_server_config(text: str) -> list[ModelConfig]:
    """The models of a text-format ModelServerConfig; ConfigError when it does not parse or is unusable."""
    doc, _ = _parse_message(_tokens(text), 0, "ModelServerConfig", None)
    if "custom_model_config" in doc:
        raise ConfigError("custom_model_config is not supported by the sandbox's TF Serving")
    models: list[ModelConfig] = []
    for cfg in (doc.get("model_config_list") or {}).get("config") or []:
        name, base = cfg.get("name", ""), cfg.get("base_path", "")
        if not name:
            raise ConfigError("ModelConfig has no name")
        if not base:
            raise ConfigError(f"ModelConfig {name} has no base_path")
        platform = cfg.get("model_platform", "")
        if "model_type" in cfg and not platform:
            platform = "tensorflow"
        if platform != "tensorflow":
            raise ConfigError(
                f"Model platform {platform or '(empty)'} of model {name} is not supported; "
                "the sandbox serves model_platform: 'tensorflow'"
            )
        policy = VersionPolicy()
        pol = cfg.get("model_version_policy") or {}
        if len(pol) > 1:
            raise ConfigError(f"model_version_policy of {name} sets more than one of latest/all/specific")
        if "all" in pol:
            policy = VersionPolicy("all")
        elif "specific" in pol:
            versions = tuple(int(v) for v in pol["specific"].get("versions") or [])
            if not versions:
                raise ConfigError(f"model_version_policy of {name}: specific {{}} lists no versions")
            policy = VersionPolicy("specific", versions=versions)
        elif "latest" in pol:
            policy = VersionPolicy("latest", num_versions=int(pol["latest"].get("num_versions", 1)) or 1)
        labels: dict[str, int] = {}
        for entry in cfg.get("version_labels") or []:
            labels[str(entry.get("key", ""))] = int(entry.get("value", 0))
        if any(m.name == name for m in models):
            raise ConfigError(f"Illegal to list model {name} multiple times in config list")
        models.append(ModelConfig(name, base, "tensorflow", policy, labels))
    if not models:
        raise ConfigError("the ModelServerConfig lists no model (model_config_list { config { ... } })")
    return models
