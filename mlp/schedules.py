"""Learning-rate schedules: ``rate(base_lr, epoch, params) -> lr`` with ``epoch`` 0-based.

The rate is constant within an epoch, so the schedule's position is the epoch count
and checkpoints need nothing extra for it.
"""
import math


def constant(lr, epoch, p):
    return lr


def step(lr, epoch, p):
    return lr * p["gamma"] ** (epoch // p["step_size"])


def exponential(lr, epoch, p):
    return lr * p["gamma"] ** epoch


def cosine(lr, epoch, p):
    # Anneal from lr to min_lr over t_max epochs, then hold min_lr.
    t = min(epoch, p["t_max"]) / p["t_max"]
    return p["min_lr"] + (lr - p["min_lr"]) * 0.5 * (1.0 + math.cos(math.pi * t))


SCHEDULES = {"constant": constant, "step": step, "exponential": exponential, "cosine": cosine}
