"""The tap-point setups of aMINT, from the input side to the output side of the network.

Defined once, here, in a module that imports nothing: the model registry
(:mod:`activemint.models.registry`), the training config and the command line's choices all
read it, and the command line can build its parser without importing torch.
"""

SETUPS: tuple[str, ...] = ("entry", "middle", "output")
