"""Exceptions raised by the engine: invalid specs and diverged training."""


class SpecError(ValueError):
    """A job spec (or its fit to a dataset) is invalid.

    ``errors`` lists ``(field_path, message)`` pairs, for example
    ``("network.layers[2].activation", "unknown activation 'sigmoidd'; ...")``.
    """

    def __init__(self, errors):
        self.errors = [(str(f), str(m)) for f, m in errors]
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.errors))


class DivergenceError(ArithmeticError):
    """Training produced a non-finite loss or gradient.

    ``epoch`` is 1-based; ``layer`` is the 1-based layer whose gradient the backward
    pass (output layer first) found non-finite first, or None; ``quantity`` is
    ``"loss"`` or ``"gradient"``, whichever was non-finite ("loss" when both were).
    """

    def __init__(self, epoch, quantity, value, layer=None):
        self.epoch = int(epoch)
        self.quantity = quantity
        self.layer = layer
        message = f"diverged at epoch {epoch}: {quantity} is {value}"
        if layer is not None:
            message += f"; first non-finite gradient in layer {layer}"
        super().__init__(message)
