"""Spec validation: every error names its field; canonical output is complete and stable."""
import json

import pytest

import mlp
from tests.engine.factories import BASE_SPEC, merge

LAYERS = [{"units": 8, "activation": "tanh"}, {"units": 8, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}]
BAD_SPECS = [
    ({"network": {"layers": [{"units": 8, "activation": "sigmoidd"}] + LAYERS[1:]}}, "network.layers[0].activation", "unknown activation 'sigmoidd'"),
    ({"network": {"layers": LAYERS[:2] + [{"units": 1, "activation": "relu"}]}}, "network.layers[2].activation", "needs a sigmoid output"),
    ({"network": {"layers": [{"units": 0, "activation": "tanh"}, LAYERS[2]]}}, "network.layers[0].units", ">= 1"),
    ({"network": {"layers": [{"units": 2.0, "activation": "tanh"}, LAYERS[2]]}}, "network.layers[0].units", "expected an integer"),
    ({"network": {"layers": [{"activation": "tanh"}, LAYERS[2]]}}, "network.layers[0].units", "is required"),
    ({"network": {"layers": [{"units": 4, "activation": "softmax"}, LAYERS[2]]}}, "network.layers[0].activation", "only on the output layer"),
    ({"network": {"layers": [{"units": 4, "activation": "tanh", "alpha": 0.1}, LAYERS[2]]}}, "network.layers[0].alpha", "only leaky_relu and elu"),
    ({"network": {"layers": [{"units": 4, "activation": "leaky_relu", "alpha": 1.5}, LAYERS[2]]}}, "network.layers[0].alpha", "< 1.0"),
    ({"network": {"layers": [{"units": 4, "activation": "tanh", "size": 3}, LAYERS[2]]}}, "network.layers[0].size", "unknown key 'size'"),
    ({"network": {"layers": []}}, "network.layers", "non-empty"),
    ({"network": {"layers": LAYERS, "init": "glorot"}}, "network.init", "unknown initialiser"),
    ({"network": {"layers": LAYERS, "depth": 3}}, "network.depth", "unknown key"),
    ({"loss": "hinge"}, "loss.name", "unknown loss 'hinge'"),
    ({"loss": {"name": "huber", "delta": -1}}, "loss.delta", "> 0.0"),
    ({"loss": {"name": "mse", "delta": 1.0}}, "loss.delta", "only huber"),
    ({"loss": "cross_entropy"}, "network.layers[1].activation", "needs a softmax output"),
    ({"optimizer": {"name": "sgdd"}}, "optimizer.name", "unknown optimizer"),
    ({"optimizer": {"learning_rate": 0}}, "optimizer.learning_rate", "> 0.0"),
    ({"optimizer": {"learning_rate": True}}, "optimizer.learning_rate", "got a boolean"),
    ({"optimizer": {"learning_rate": "0.1"}}, "optimizer.learning_rate", "got a string"),
    ({"optimizer": {"learning_rate": float("nan")}}, "optimizer.learning_rate", "finite"),
    ({"optimizer": {"learning_rate": float("inf")}}, "optimizer.learning_rate", "finite"),
    ({"optimizer": {"momentum": 1.0}}, "optimizer.momentum", "< 1.0"),
    ({"optimizer": {"nesterov": True}}, "optimizer.nesterov", "momentum > 0"),
    ({"optimizer": {"nesterov": 1, "momentum": 0.9}}, "optimizer.nesterov", "true or false"),
    ({"optimizer": {"beta1": 0.9}}, "optimizer.beta1", "not used by the sgd optimizer"),
    ({"optimizer": {"name": "adam", "beta2": 1.0}}, "optimizer.beta2", "< 1.0"),
    ({"optimizer": {"name": "adam", "eps": 0}}, "optimizer.eps", "> 0.0"),
    ({"optimizer": {"name": "rmsprop", "rho": -0.1}}, "optimizer.rho", ">= 0.0"),
    ({"optimizer": {"weight_decay": -1}}, "optimizer.weight_decay", ">= 0.0"),
    ({"optimizer": {"lr": 0.1}}, "optimizer.lr", "unknown key 'lr'"),
    ({"optimizer": {"schedule": {"name": "linear"}}}, "optimizer.schedule.name", "unknown schedule"),
    ({"optimizer": {"schedule": {"name": "step", "step_size": 0}}}, "optimizer.schedule.step_size", ">= 1"),
    ({"optimizer": {"schedule": {"name": "exponential", "gamma": 1.5}}}, "optimizer.schedule.gamma", "<= 1.0"),
    ({"optimizer": {"schedule": {"name": "constant", "gamma": 0.5}}}, "optimizer.schedule.gamma", "not used by the constant"),
    ({"optimizer": {"schedule": {"name": "cosine", "min_lr": -1}}}, "optimizer.schedule.min_lr", ">= 0.0"),
    ({"training": {"epochs": 0}}, "training.epochs", ">= 1"),
    ({"training": {"epochs": 10.5}}, "training.epochs", "expected an integer"),
    ({"training": {"batch_size": 0}}, "training.batch_size", ">= 1"),
    ({"training": {"shuffle": "yes"}}, "training.shuffle", "true or false"),
    ({"training": {"seed": -1}}, "training.seed", ">= 0"),
    ({"training": {"seed": 1.5}}, "training.seed", "expected an integer"),
    ({"training": {"dtype": "float16"}}, "training.dtype", "unknown dtype"),
    ({"training": {"validation_split": 1.0}}, "training.validation_split", "< 1.0"),
    ({"training": {"validation_split": -0.1}}, "training.validation_split", ">= 0.0"),
    ({"training": {"early_stopping": {"monitor": "loss"}}}, "training.early_stopping.monitor", "unknown monitor"),
    ({"training": {"early_stopping": {"patience": 0}}}, "training.early_stopping.patience", ">= 1"),
    ({"training": {"early_stopping": {"min_delta": -1}}}, "training.early_stopping.min_delta", ">= 0.0"),
    ({"training": {"early_stopping": {"restore_best": "no"}}}, "training.early_stopping.restore_best", "true or false"),
    ({"training": {"early_stopping": {"wait": 3}}}, "training.early_stopping.wait", "unknown key"),
    ({"training": {"gradient_clip_norm": 0}}, "training.gradient_clip_norm", "> 0.0"),
    ({"training": {"max_runtime_s": -5}}, "training.max_runtime_s", "> 0.0"),
    ({"training": {"epoch": 3}}, "training.epoch", "unknown key 'epoch'"),
    ({"record": {"every_epochs": 0}}, "record.every_epochs", ">= 1"),
    ({"record": {"every": 2}}, "record.every", "unknown key"),
    ({"diagnostics": {"gradient_check": {"samples": 0}}}, "diagnostics.gradient_check.samples", ">= 1"),
    ({"diagnostics": {"trace": True}}, "diagnostics.trace", "unknown key"),
    ({"extra": 1}, "extra", "unknown key 'extra'"),
    ({"network": "deep"}, "network", "expected an object"),
]


@pytest.mark.parametrize("override,field,message", BAD_SPECS, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD_SPECS)])
def test_validation_errors_name_the_field(override, field, message):
    raw = merge(BASE_SPEC, override)
    with pytest.raises(mlp.SpecError) as info:
        mlp.validate_spec(raw)
    fields = dict(info.value.errors)
    assert field in fields, info.value.errors
    assert message in fields[field]
    assert f"{field}: {fields[field]}" in str(info.value)


def test_missing_network_and_non_object_spec():
    with pytest.raises(mlp.SpecError) as info:
        mlp.validate_spec({})
    assert info.value.errors[0][0] == "network"
    with pytest.raises(mlp.SpecError):
        mlp.validate_spec([1, 2])


def test_all_errors_reported_at_once():
    raw = merge(BASE_SPEC, {"training": {"epochs": 0, "batch_size": 0}, "optimizer": {"learning_rate": -1}})
    with pytest.raises(mlp.SpecError) as info:
        mlp.validate_spec(raw)
    assert {f for f, _ in info.value.errors} == {"training.epochs", "training.batch_size", "optimizer.learning_rate"}


def test_canonical_spec_is_complete_json_and_idempotent():
    canonical = mlp.validate_spec({"network": {"layers": [{"units": 3}, {"units": 2, "activation": "leaky_relu"}]}})
    assert json.loads(json.dumps(canonical)) == canonical
    assert mlp.validate_spec(canonical) == canonical
    assert canonical["loss"] == {"name": "mse"}
    assert canonical["network"]["layers"][0]["activation"] == "relu"
    assert canonical["network"]["layers"][1] == {"units": 2, "activation": "leaky_relu", "alpha": 0.01}
    assert canonical["optimizer"] == {"name": "sgd", "learning_rate": 0.01, "momentum": 0.0, "nesterov": False,
                                      "weight_decay": 0.0, "schedule": {"name": "constant"}}
    assert canonical["training"]["seed"] is None and canonical["diagnostics"] is None


def test_raw_input_is_not_mutated():
    raw = merge(BASE_SPEC, {})
    before = json.dumps(raw, sort_keys=True)
    mlp.validate_spec(raw)
    assert json.dumps(raw, sort_keys=True) == before


def test_trainer_requires_an_integer_seed():
    X, y, _ = mlp.datasets.make("xor")
    with pytest.raises(mlp.SpecError) as info:
        mlp.Trainer(merge(BASE_SPEC, {"training": {"seed": None}}), X, y, n_classes=2)
    assert info.value.errors[0][0] == "training.seed"


def test_json_schema_lists_enums_and_closes_objects():
    schema = mlp.spec_json_schema()
    assert schema["required"] == ["network"] and schema["additionalProperties"] is False
    layer = schema["properties"]["network"]["properties"]["layers"]["items"]
    assert set(layer["properties"]["activation"]["enum"]) == set(mlp.ACTIVATIONS)
    assert set(schema["properties"]["optimizer"]["properties"]["name"]["enum"]) == set(mlp.OPTIMIZERS)
    json.dumps(schema)

    def closed(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
            for value in node.values():
                closed(value)
        elif isinstance(node, list):
            for value in node:
                closed(value)
    closed(schema)


FIT_ERRORS = [
    ([{"units": 2, "activation": "softmax"}], "cross_entropy", "regression", 2, "loss"),
    ([{"units": 1, "activation": "sigmoid"}], "binary_cross_entropy", "classification", 3, "loss"),
    ([{"units": 2, "activation": "softmax"}], "cross_entropy", "classification", 3, "network.layers[0].units"),
    ([{"units": 3, "activation": "sigmoid"}], "mse", "classification", 2, "network.layers[0].units"),
    ([{"units": 2, "activation": "identity"}], "mse", "regression", 1, "network.layers[0].units"),
    ([{"units": 1, "activation": "sigmoid"}], "binary_cross_entropy", "regression", 1, "loss"),
    ([{"units": 1, "activation": "identity"}], "mae", "classification", 2, "loss"),
]


@pytest.mark.parametrize("layers,loss,task,n_out,field", FIT_ERRORS)
def test_check_data_fit_names_the_field(layers, loss, task, n_out, field):
    spec = mlp.validate_spec({"network": {"layers": layers}, "loss": loss})
    with pytest.raises(mlp.SpecError) as info:
        mlp.check_data_fit(spec, n_features=2, task=task, n_outputs=n_out)
    assert info.value.errors[0][0] == field


def test_check_data_fit_message_suggests_the_fix():
    spec = mlp.validate_spec({"network": {"layers": [{"units": 3, "activation": "sigmoid"}]}, "loss": "mse"})
    with pytest.raises(mlp.SpecError, match="use 1 unit with sigmoid and binary_cross_entropy, or 2 with softmax"):
        mlp.check_data_fit(spec, n_features=2, task="classification", n_outputs=2)


@pytest.mark.parametrize("layers,loss,n_out", [
    ([{"units": 1, "activation": "sigmoid"}], "mse", 2),  # the student's XOR: sigmoid + quadratic loss
    ([{"units": 3, "activation": "sigmoid"}], "mse", 3),
    ([{"units": 1, "activation": "sigmoid"}], "binary_cross_entropy", 2),
    ([{"units": 4, "activation": "softmax"}], "cross_entropy", 4),
])
def test_check_data_fit_accepts_valid_classifiers(layers, loss, n_out):
    spec = mlp.validate_spec({"network": {"layers": layers}, "loss": loss})
    mlp.check_data_fit(spec, n_features=2, task="classification", n_outputs=n_out)


def test_early_stopping_on_validation_needs_validation_data():
    X, y, _ = mlp.datasets.make("xor")
    spec = merge(BASE_SPEC, {"training": {"early_stopping": {"monitor": "val_loss"}}})
    with pytest.raises(mlp.SpecError) as info:
        mlp.Trainer(spec, X, y, n_classes=2)
    assert info.value.errors[0][0] == "training.early_stopping.monitor"


def test_json_schema_accepts_canonical_specs_and_refuses_bad_ones():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(mlp.spec_json_schema())
    validator.check_schema(mlp.spec_json_schema())
    for raw in (BASE_SPEC, merge(BASE_SPEC, {"loss": {"name": "huber", "delta": 2.0}, "training": {"seed": None}}),
                merge(BASE_SPEC, {"optimizer": {"name": "adam", "schedule": {"name": "cosine", "t_max": 5}},
                                  "diagnostics": {"gradient_check": {"every_epochs": 2, "samples": 4}}})):
        validator.validate(raw)
        validator.validate(mlp.validate_spec(raw))
    # validate_spec is stricter only in what JSON Schema cannot say simply: cross-field rules,
    # per-name keys, per-activation alpha ranges, 2.0 as an integer, and NaN/inf (not JSON).
    looser = ("needs a", "only", "not used by", "momentum > 0", "expected an integer", "finite", "< 1.0")
    for override, field, message in BAD_SPECS:
        if validator.is_valid(merge(BASE_SPEC, override)):
            assert any(m in message for m in looser), (field, message)
