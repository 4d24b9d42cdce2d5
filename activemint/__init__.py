"""activemint: Active Membership Inference Test (aMINT) for auditable image classifiers.

The data flows one way: data -> splits -> model + taps -> trainer -> scores -> metrics ->
report / audit decision.  Every method that answers "is this a member?" ends in a score per
sample, higher = more likely member, and :mod:`activemint.metrics` turns any scores into the
same figures.
"""

__version__ = "0.1.0"
