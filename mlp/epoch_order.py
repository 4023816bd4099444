"""Shuffled training rows drawn for a block of epochs at once, for small datasets.

A small dataset's epoch is a step or two, so drawing a permutation, saving the RNG
state and gathering the rows every epoch cost as much as the training itself (XOR:
about 10 µs of a 75 µs epoch). Here one ``Generator.permuted`` call shuffles K rows of
``arange(n)`` independently, one ``take`` per array gathers all K epochs' rows, and each
epoch is a contiguous slice. The block is a pure function of the RNG state at its start,
which a checkpoint stores with the block's first epoch, so a resume redraws it exactly.
"""
import numpy as np

# A block holds at most this many rows (and values of X and T together), so that
# drawing it stays cheap and small; datasets of more than half of it draw per epoch.
BLOCK_ROWS = 8192
BLOCK_VALUES = 1 << 18


def epochs_per_block(n, width):
    """Return how many epochs of n rows of ``width`` values one block holds (1: none)."""
    return max(1, min(BLOCK_ROWS // max(n, 1), BLOCK_VALUES // max(n * width, 1)))


class OrderBlock:
    """The rows of ``epochs`` consecutive epochs, each in its own seeded order."""

    def __init__(self, Xa, T, labels, epochs):
        self.sources = [a for a in (Xa, T, labels) if a is not None]
        self.n, self.epochs = len(Xa), epochs
        self.blocks = [np.empty((epochs * self.n,) + a.shape[1:], a.dtype) for a in self.sources]
        self.start = None       # the block's first epoch; None before the first draw
        self.rng_state = None   # the RNG state the block was drawn from

    def views(self, rng, epoch):
        """Return the epoch's (X, T, labels or None) rows, drawing the blocks that follow
        the current one until one covers ``epoch``.

        Blocks follow each other, so a trainer resumed with another block size (a
        checkpoint from an engine with other bounds) still draws every epoch's
        permutation in turn from the same stream.
        """
        if self.start is None or epoch < self.start:
            self.draw(rng, epoch)
        while epoch >= self.start + self.epochs:
            self.draw(rng, self.start + self.epochs)
        lo = (epoch - self.start) * self.n
        hi, blocks = lo + self.n, self.blocks
        return blocks[0][lo:hi], blocks[1][lo:hi], blocks[2][lo:hi] if len(blocks) == 3 else None

    def draw(self, rng, start):
        """Draw the block of epochs beginning at ``start`` from ``rng``'s current state."""
        self.start, self.rng_state = start, rng.bit_generator.state
        order = np.tile(np.arange(self.n), (self.epochs, 1))
        rng.permuted(order, axis=1, out=order)
        order = order.ravel()
        for source, block in zip(self.sources, self.blocks):
            # mode="clip" skips the bounds-check pass; order is in range by construction.
            source.take(order, axis=0, out=block, mode="clip")
