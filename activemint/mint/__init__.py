"""The method itself: MINT head, Enhanced Audited Model, multitask loss."""
from activemint.mint.head import MintHead
from activemint.mint.loss import MultitaskLoss, membership_bce
from activemint.mint.model import EnhancedAuditedModel, disable_inplace, validate_taps

__all__ = ["MintHead", "MultitaskLoss", "membership_bce", "EnhancedAuditedModel", "disable_inplace", "validate_taps"]
