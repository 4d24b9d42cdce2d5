"""Auditor-side image transformations with named severity levels.

An auditor rarely holds a bit-exact copy of a training image: it was re-encoded, cropped,
resized, shifted.  This module applies such changes to uint8 image tensors (N, C, H, W) with
Pillow and torchvision's functional ops, so that detection can be measured on near-copies
(``activemint robustness``) and the MINT head can be trained on them (robust Active MINT).

Every transformation has named severity levels (``TRANSFORMS["jpeg"].levels["q50"] == 50``).
The random part of a transformation (the direction of a shift, the position of a crop, the
noise) is drawn from a generator seeded by ``(seed, transformation, SHA-256 of the image's
pixels)``: the same image gets the same transformed copy whether it is passed as a member or
as a non-member, in any order and in any batch, and members and non-members go through the
very same code.

    from activemint.transforms import apply_transform
    shifted = apply_transform(images, "translate", "2px", seed=0)

The modules: :mod:`~activemint.transforms.images` (each transformation of one image, its
levels, :func:`apply_transform`, :func:`parse_spec`), :mod:`~activemint.transforms.batched`
(tensor versions for a whole batch on its device) and :mod:`~activemint.transforms.policy`
(the audit policies that train robust aMINT).
"""
from activemint.transforms.batched import jpeg_tensor
from activemint.transforms.images import (
    TRANSFORMS,
    Transform,
    TransformError,
    apply_transform,
    available,
    get_transform,
    image_rng,
    parse_spec,
    register_transform,
)
from activemint.transforms.policy import POLICIES, AuditPolicy, get_policy, register_policy

__all__ = ["POLICIES", "TRANSFORMS", "AuditPolicy", "Transform", "TransformError", "apply_transform", "available",
           "get_policy", "get_transform", "image_rng", "jpeg_tensor", "parse_spec", "register_policy", "register_transform"]
