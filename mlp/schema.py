"""JSON Schema (2020-12, OpenAPI 3.1 compatible) of the raw job spec.

It describes shapes, types, ranges and enums. validate_spec is stricter in two places
the schema leaves open: optimizer and schedule keys must be ones the chosen name uses,
and the output activation must suit the loss.
"""
from .activations import ACTIVATIONS
from .initializers import INIT_NAMES
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .spec import DTYPES, MAX_SEED, MONITORS


def _obj(properties, required=()):
    out = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _int(minimum=1, **extra):
    return {"type": "integer", "minimum": minimum, **extra}


def _num(**bounds):
    return {"type": "number", **bounds}


def _nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


def spec_json_schema():
    """Return the JSON Schema of a raw job spec (every key optional except network.layers)."""
    layer = _obj({"units": _int(), "activation": {"enum": list(ACTIVATIONS)},
                  "alpha": _num(minimum=0)}, required=("units",))
    loss_names = {"enum": list(LOSSES)}
    loss = {"anyOf": [loss_names, _obj({"name": loss_names, "delta": _num(exclusiveMinimum=0)}, ("name",))]}
    unit = _num(minimum=0, exclusiveMaximum=1)
    schedule = _obj({"name": {"enum": list(SCHEDULES)}, "step_size": _int(), "gamma": _num(exclusiveMinimum=0, maximum=1),
                     "t_max": _int(), "min_lr": _num(minimum=0)})
    optimizer = _obj({
        "name": {"enum": list(OPTIMIZERS)}, "learning_rate": _num(exclusiveMinimum=0),
        "momentum": unit, "nesterov": {"type": "boolean"}, "weight_decay": _num(minimum=0),
        "beta1": unit, "beta2": unit, "eps": _num(exclusiveMinimum=0), "rho": unit, "schedule": schedule})
    early = _obj({"monitor": {"enum": list(MONITORS)}, "patience": _int(), "min_delta": _num(minimum=0),
                  "restore_best": {"type": "boolean"}})
    training = _obj({
        "epochs": _int(), "batch_size": _int(), "shuffle": {"type": "boolean"},
        "seed": _nullable(_int(0, maximum=MAX_SEED)), "dtype": {"enum": list(DTYPES)},
        "validation_split": unit, "early_stopping": _nullable(early),
        "gradient_clip_norm": _nullable(_num(exclusiveMinimum=0)),
        "max_runtime_s": _nullable(_num(exclusiveMinimum=0))})
    gradient_check = _obj({"every_epochs": _int(), "samples": _int()})
    return _obj({
        "network": _obj({"layers": {"type": "array", "items": layer, "minItems": 1},
                         "init": {"enum": list(INIT_NAMES)}}, required=("layers",)),
        "loss": loss, "optimizer": optimizer, "training": training,
        "record": _obj({"every_epochs": _int()}),
        "diagnostics": _nullable(_obj({"gradient_check": _nullable(gradient_check)})),
    }, required=("network",))
