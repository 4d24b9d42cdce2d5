"""The method itself: MINT head, Enhanced Audited Model (and the plain model with the same calls), multitask loss."""
from activemint.mint.auditable import AuditableModel, make_auditable, pixels_to_input
from activemint.mint.head import MintHead
from activemint.mint.loss import MultitaskLoss, membership_bce
from activemint.mint.model import EnhancedAuditedModel, PlainModel
from activemint.models.taps import disable_inplace

__all__ = ["AuditableModel", "EnhancedAuditedModel", "MintHead", "MultitaskLoss", "PlainModel", "disable_inplace",
           "make_auditable", "membership_bce", "pixels_to_input"]
