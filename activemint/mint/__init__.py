"""The method itself: MINT head, Enhanced Audited Model, multitask loss."""
from activemint.mint.head import MintHead
from activemint.mint.loss import MultitaskLoss
from activemint.mint.model import EnhancedAuditedModel, disable_inplace, validate_taps

__all__ = ["MintHead", "MultitaskLoss", "EnhancedAuditedModel", "disable_inplace", "validate_taps"]
