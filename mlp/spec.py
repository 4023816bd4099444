"""The job spec: strict validation into a canonical dict with every default filled in.

Canonical representation choices (documented in docs/engine.md):
- ``loss`` is always an object ``{"name": ...}``, plus ``"delta"`` for huber; the raw
  spec may also give a bare name string.
- ``optimizer`` holds exactly the keys its ``name`` uses; others are refused.
- ``network.layers[i].alpha`` is present exactly for leaky_relu and elu.
"""
from .activations import ACTIVATIONS, ALPHA_DEFAULTS
from .errors import SpecError
from .fields import Fields
from .initializers import INIT_NAMES
from .losses import FUSED_ACTIVATION, LOSSES
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES

TOP_KEYS = ("network", "loss", "optimizer", "training", "record", "diagnostics")
# Keys each optimizer uses, beyond name, learning_rate and schedule.
OPTIMIZER_KEYS = {
    "sgd": ("momentum", "nesterov", "weight_decay"),
    "adam": ("beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("rho", "eps", "momentum", "weight_decay"),
    "adagrad": ("eps", "weight_decay"),
}
ALL_OPTIMIZER_KEYS = ("name", "learning_rate", "momentum", "nesterov", "weight_decay",
                      "beta1", "beta2", "eps", "rho", "schedule")
SCHEDULE_KEYS = {"constant": (), "step": ("step_size", "gamma"),
                 "exponential": ("gamma",), "cosine": ("t_max", "min_lr")}
MONITORS = ("val_loss", "val_accuracy", "train_loss")
DTYPES = ("float32", "float64")
MAX_SEED = 2 ** 63 - 1


def validate_spec(raw):
    """Validate a raw job spec; return a new canonical dict or raise SpecError listing every error."""
    f = Fields()
    raw = f.obj(raw, "", TOP_KEYS, required=("network",))
    training = _training(f, raw.get("training", {}))
    loss = _loss(f, raw.get("loss", "mse"))
    spec = {
        "network": _network(f, raw.get("network", {}), loss),
        "loss": loss,
        "optimizer": _optimizer(f, raw.get("optimizer", {}), training),
        "training": training,
        "record": _record(f, raw.get("record", {})),
        "diagnostics": _diagnostics(f, raw.get("diagnostics")),
    }
    if f.errors:
        raise SpecError(f.errors)
    return spec


def _network(f, raw, loss):
    raw = f.obj(raw, "network", ("layers", "init"), required=("layers",))
    layers = raw.get("layers", [])
    if not isinstance(layers, list) or not layers:
        if "layers" in raw:
            f.error("network.layers", "expected a non-empty array of layers")
        layers = []
    last = len(layers) - 1
    out = [_layer(f, layer, f"network.layers[{i}]", i == last, loss) for i, layer in enumerate(layers)]
    return {"layers": out, "init": f.choice(raw, "init", "network", "auto", INIT_NAMES, "initialiser")}


def _layer(f, raw, path, is_output, loss):
    raw = f.obj(raw, path, ("units", "activation", "alpha"), required=("units",))
    units = f.number(raw, "units", path, 1, integer=True, minimum=1)
    default = FUSED_ACTIVATION.get(loss and loss["name"], "identity") if is_output else "relu"
    act = f.choice(raw, "activation", path, default, tuple(ACTIVATIONS), "activation")
    layer = {"units": units, "activation": act}
    if act in ALPHA_DEFAULTS:
        hi = {"maximum": 1.0, "exclusive_max": True} if act == "leaky_relu" else {}
        layer["alpha"] = f.number(raw, "alpha", path, ALPHA_DEFAULTS[act], minimum=0.0,
                                  exclusive_min=act == "elu", **hi)
    elif "alpha" in raw and act is not None:
        f.error(f"{path}.alpha", f"only leaky_relu and elu take alpha, not {act}")
    if act is not None and loss is not None:
        _check_pairing(f, path, act, units, is_output, loss["name"])
    return layer


def _check_pairing(f, path, act, units, is_output, loss):
    """Check the rules that tie the output layer's activation to the loss."""
    if act == "softmax" and not is_output:
        f.error(f"{path}.activation", "softmax is allowed only on the output layer, with cross_entropy")
    elif is_output and act == "softmax" and loss != "cross_entropy":
        f.error(f"{path}.activation", f"softmax output needs the cross_entropy loss, not {loss}")
    elif is_output and loss in FUSED_ACTIVATION and act != FUSED_ACTIVATION[loss]:
        f.error(f"{path}.activation", f"{loss} needs a {FUSED_ACTIVATION[loss]} output layer, not {act}")
    elif is_output and units is not None and loss == "binary_cross_entropy" and units != 1:
        f.error(f"{path}.units", f"binary_cross_entropy needs 1 output unit, not {units}")
    elif is_output and units is not None and act == "softmax" and units < 2:
        f.error(f"{path}.units", "a softmax output layer needs at least 2 units")


def _loss(f, raw):
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = f.obj(raw, "loss", ("name", "delta"), required=("name",))
    name = f.choice(raw, "name", "loss", "mse", tuple(LOSSES), "loss")
    if name is None:
        return None
    if name == "huber":
        return {"name": name, "delta": f.number(raw, "delta", "loss", 1.0, minimum=0.0, exclusive_min=True)}
    if "delta" in raw:
        f.error("loss.delta", f"only huber takes delta, not {name}")
    return {"name": name}


def _optimizer(f, raw, training):
    raw = f.obj(raw, "optimizer", ALL_OPTIMIZER_KEYS)
    name = f.choice(raw, "name", "optimizer", "sgd", tuple(OPTIMIZERS), "optimizer")
    if name is None:
        return {}
    for key in raw:
        if key in ALL_OPTIMIZER_KEYS and key not in ("name", "learning_rate", "schedule") + OPTIMIZER_KEYS[name]:
            f.error(f"optimizer.{key}", f"not used by the {name} optimizer")
    p = "optimizer"
    default_lr = 0.001 if name in ("adam", "adamw") else 0.01
    out = {"name": name, "learning_rate": f.number(raw, "learning_rate", p, default_lr, minimum=0.0, exclusive_min=True)}
    readers = {
        "momentum": lambda: f.number(raw, "momentum", p, 0.0, minimum=0.0, maximum=1.0, exclusive_max=True),
        "nesterov": lambda: f.boolean(raw, "nesterov", p, False),
        "weight_decay": lambda: f.number(raw, "weight_decay", p, 0.01 if name == "adamw" else 0.0, minimum=0.0),
        "beta1": lambda: f.number(raw, "beta1", p, 0.9, minimum=0.0, maximum=1.0, exclusive_max=True),
        "beta2": lambda: f.number(raw, "beta2", p, 0.999, minimum=0.0, maximum=1.0, exclusive_max=True),
        "eps": lambda: f.number(raw, "eps", p, 1e-8, minimum=0.0, exclusive_min=True),
        "rho": lambda: f.number(raw, "rho", p, 0.9, minimum=0.0, maximum=1.0, exclusive_max=True),
    }
    for key in OPTIMIZER_KEYS[name]:
        out[key] = readers[key]()
    if out.get("nesterov") and out.get("momentum") == 0.0:
        f.error("optimizer.nesterov", "needs momentum > 0")
    out["schedule"] = _schedule(f, raw.get("schedule", {"name": "constant"}), training)
    return out


def _schedule(f, raw, training):
    p = "optimizer.schedule"
    raw = f.obj(raw, p, ("name", "step_size", "gamma", "t_max", "min_lr"))
    name = f.choice(raw, "name", p, "constant", tuple(SCHEDULES), "schedule")
    if name is None:
        return {}
    for key in raw:
        if key in ("step_size", "gamma", "t_max", "min_lr") and key not in SCHEDULE_KEYS[name]:
            f.error(f"{p}.{key}", f"not used by the {name} schedule")
    out = {"name": name}
    if "step_size" in SCHEDULE_KEYS[name]:
        out["step_size"] = f.number(raw, "step_size", p, 10, integer=True, minimum=1)
    if "gamma" in SCHEDULE_KEYS[name]:
        out["gamma"] = f.number(raw, "gamma", p, 0.1 if name == "step" else 0.95,
                                minimum=0.0, exclusive_min=True, maximum=1.0)
    if name == "cosine":
        out["t_max"] = f.number(raw, "t_max", p, training.get("epochs") or 1, integer=True, minimum=1)
        out["min_lr"] = f.number(raw, "min_lr", p, 0.0, minimum=0.0)
    return out


def _training(f, raw):
    p = "training"
    raw = f.obj(raw, p, ("epochs", "batch_size", "shuffle", "seed", "dtype", "validation_split",
                         "early_stopping", "gradient_clip_norm", "max_runtime_s"))
    return {
        "epochs": f.number(raw, "epochs", p, 100, integer=True, minimum=1),
        "batch_size": f.number(raw, "batch_size", p, 32, integer=True, minimum=1),
        "shuffle": f.boolean(raw, "shuffle", p, True),
        "seed": f.optional_number(raw, "seed", p, integer=True, minimum=0, maximum=MAX_SEED),
        "dtype": f.choice(raw, "dtype", p, "float64", DTYPES, "dtype"),
        "validation_split": f.number(raw, "validation_split", p, 0.0, minimum=0.0, maximum=1.0, exclusive_max=True),
        "early_stopping": _early_stopping(f, raw.get("early_stopping")),
        "gradient_clip_norm": f.optional_number(raw, "gradient_clip_norm", p, minimum=0.0, exclusive_min=True),
        "max_runtime_s": f.optional_number(raw, "max_runtime_s", p, minimum=0.0, exclusive_min=True),
    }


def _early_stopping(f, raw):
    if raw is None:
        return None
    p = "training.early_stopping"
    raw = f.obj(raw, p, ("monitor", "patience", "min_delta", "restore_best"))
    return {
        "monitor": f.choice(raw, "monitor", p, "val_loss", MONITORS, "monitor"),
        "patience": f.number(raw, "patience", p, 10, integer=True, minimum=1),
        "min_delta": f.number(raw, "min_delta", p, 0.0, minimum=0.0),
        "restore_best": f.boolean(raw, "restore_best", p, True),
    }


def _record(f, raw):
    raw = f.obj(raw, "record", ("every_epochs",))
    return {"every_epochs": f.number(raw, "every_epochs", "record", 1, integer=True, minimum=1)}


def _diagnostics(f, raw):
    if raw is None:
        return None
    raw = f.obj(raw, "diagnostics", ("gradient_check",))
    gc = raw.get("gradient_check")
    if gc is None:
        return {"gradient_check": None}
    p = "diagnostics.gradient_check"
    gc = f.obj(gc, p, ("every_epochs", "samples"))
    return {"gradient_check": {
        "every_epochs": f.number(gc, "every_epochs", p, 10, integer=True, minimum=1),
        "samples": f.number(gc, "samples", p, 8, integer=True, minimum=1),
    }}
