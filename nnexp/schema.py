"""JSON Schemas (draft 2020-12) of a config and of a sweep spec, for YAML-aware editors.

Both are generated from the tables the validators check against: the config's
sections (``nnexp.config.SCHEMA``), the option tables of the layers, optimizers,
schedules and augmentations, and the sweep spec's tables (``nnexp.sweep.spec``);
nothing here names a key. ``nnexp schema config`` / ``nnexp schema sweep`` print
them; ``schemas/`` holds the committed copies that the shipped YAML files name.

A schema says less than the validators: rules only the code that builds a
network knows (a kernel that fits the image, one unit per class in the last
dense layer) and most rules between a sweep's keys are checked by nnexp alone.
"""

from __future__ import annotations

import json

from .augment import AUGMENT_SPECS
from .config import (DEFAULT_OPTIMIZER, DEFAULT_SCHEDULE, EARLY_STOPPING, OPTIMIZER_EXTRA, REQUIRED, SCHEMA,
                     TOP_LEVEL, Field, layer_fields, option_fields)
from .engines import ENGINES
from .nn import LAYER_SPECS, OPTIMIZER_SPECS, SCHEDULE_SPECS
from .sweep.spec import HALVING_FIELDS, METRICS, OBJECTIVE_FIELDS, OBJECTIVES, PARAM_FIELDS, SPEC_FIELDS

__all__ = ["SCHEMAS", "config_schema", "sweep_schema", "dumps"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object"}
#: a layer type naming a class of the user's own (nnexp.nn.user_layers.is_user_type)
USER_LAYER = {"type": "string", "pattern": ":", "description": "your own layer class: file.py:Class or module:Class"}
#: a dotted config key such as optimizer.lr, as a sweep names what it varies
DOTTED_KEY = {"pattern": r"^[^.]+(\.[^.]+)*$"}


def field_schema(field: Field) -> dict:
    """One Field: its JSON type (null too where it may be empty), range, choices and default."""
    out: dict = {"type": [JSON_TYPES[field.type], "null"] if field.nullable else JSON_TYPES[field.type]}
    if field.choices is not None:
        out["enum"] = [*field.choices, None] if field.nullable else list(field.choices)
    if field.check is not None:
        out.update(field.check.json_schema())
    if field.default is not REQUIRED and (field.default is not None or field.nullable):
        out["default"] = field.default
    return out


def mapping(fields: dict[str, Field], nullable: bool = False, extra: dict | None = None) -> dict:
    """A mapping of ``fields``, no other key allowed; the required ones are those without a default."""
    out: dict = {"type": ["object", "null"] if nullable else "object",
                 "properties": {key: field_schema(f) for key, f in fields.items()}, **(extra or {}),
                 "additionalProperties": False}
    required = [key for key, f in fields.items() if f.default is REQUIRED]
    if required:
        out["required"] = required
    return out


def by_name(key: str, variants: dict[str, dict[str, Field]], default: str | None, nullable: bool = False) -> dict:
    """A mapping whose other keys depend on its ``key`` (an optimizer's ``name``, a layer's ``type``);
    ``default``: the variant of a mapping without it."""
    names = {"enum": list(variants)}
    out: dict = {"type": ["object", "null"] if nullable else "object",
                 "properties": {key: names if default is None else {**names, "default": default}}}
    if default is None:
        out["required"] = [key]
    out["allOf"] = [{"if": {"type": "object", "properties": {key: {"const": name}}, "required": [key]},
                     "then": mapping({key: Field(str, name), **fields})} for name, fields in variants.items()]
    if default is not None:
        out["allOf"].append({"if": {"type": "object", "not": {"required": [key]}},
                             "then": mapping({key: Field(str, default), **variants[default]})})
    return out


def config_schema() -> dict:
    """The schema of a run config (nnexp/config.py)."""
    sections = {name: mapping(fields, nullable=name != "model") for name, fields in SCHEMA.items()}
    # an engine's own layer options (the fast conv's algorithm) are keys of the layer; the validator
    # says when a config's engine lacks one
    own = {kind: {key: spec for e in ENGINES.values() for key, spec in e.layer_options.get(kind, {}).items()}
           for kind in LAYER_SPECS}
    layer = by_name("type", {kind: {**layer_fields(kind), **option_fields(own[kind], nullable=True)}
                             for kind in LAYER_SPECS}, None)
    layer["properties"]["type"] = {"anyOf": [layer["properties"]["type"], USER_LAYER]}
    sections["model"]["properties"]["layers"] = {"type": "array", "minItems": 1, "items": layer}
    data = sections["data"]["properties"]
    data["augment"] = {**mapping(option_fields(AUGMENT_SPECS), nullable=True), "default": None}
    sections["train"]["properties"]["early_stopping"] = {**mapping(EARLY_STOPPING, nullable=True), "default": None}
    optimizers = {name: {**option_fields(options), **OPTIMIZER_EXTRA} for name, options in OPTIMIZER_SPECS.items()}
    sections["optimizer"] = by_name("name", optimizers, DEFAULT_OPTIMIZER, nullable=True)
    schedules = {name: option_fields(options) for name, options in SCHEDULE_SPECS.items()}
    sections["schedule"] = by_name("name", schedules, DEFAULT_SCHEDULE, nullable=True)
    return {"$schema": DRAFT, "title": "nnexp config", "type": "object",
            "properties": {name: sections[name] for name in TOP_LEVEL},
            "required": ["model"], "additionalProperties": False}


def sweep_schema() -> dict:
    """The schema of a sweep spec (nnexp/sweep/spec.py)."""
    props = {key: field_schema(f) for key, f in SPEC_FIELDS.items()}
    param = mapping(PARAM_FIELDS)
    param["properties"]["values"]["minItems"] = 1
    props["parameters"]["propertyNames"] = DOTTED_KEY
    props["parameters"]["additionalProperties"] = {"anyOf": [{"type": "array", "minItems": 1}, param]}
    group = {"type": "object", "minProperties": 1, "propertyNames": DOTTED_KEY,
             "additionalProperties": {"type": "array", "minItems": 1}}
    props["zip"]["items"] = group
    props["halving"] = mapping(HALVING_FIELDS, nullable=True)
    objective = mapping(OBJECTIVE_FIELDS)
    objective["required"] = ["name"]
    props["metrics"].update(minItems=2, items={"anyOf": [{"enum": list(OBJECTIVES)}, objective]})
    props["seeds"].update(minItems=1, uniqueItems=True, items=field_schema(SPEC_FIELDS["seeds"].items))
    own_code = {"anyOf": [{"required": ["command"]}, {"required": ["function"]}]}
    return {"$schema": DRAFT, "title": "nnexp sweep spec", "type": "object", "properties": props,
            "additionalProperties": False,
            "oneOf": [{"required": ["base"]}, {"required": ["command"]}, {"required": ["function"]}],
            # a sweep of a base config reads one of the validation metrics; your own code logs any name
            "if": {"not": own_code}, "then": {"properties": {"metric": {"enum": list(METRICS)}}}}


SCHEMAS = {"config": config_schema, "sweep": sweep_schema}


def dumps(schema: dict) -> str:
    """The schema as the committed files hold it."""
    return json.dumps(schema, indent=2) + "\n"
