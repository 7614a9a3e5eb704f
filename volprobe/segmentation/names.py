"""TotalSegmentator structure names: side, mirroring, and plain English.

``kidney_left`` → side 'left', mirror ``kidney_right``, plain "left kidney";
``vertebrae_L1`` → "L1 vertebra"; ``rib_left_7`` → "left 7th rib". Each plain name keeps its
grammatical number (:func:`is_plural`: "the costal cartilages *are*", "the liver *is*").
"""

from __future__ import annotations

import re

_SIDE_RE = re.compile(r"(?:^|_)(left|right)(?:_|$)")

#: Plain names that read better than the mechanical rewrite.
_SPECIAL = {
    "inferior_vena_cava": "inferior vena cava",
    "superior_vena_cava": "superior vena cava",
    "portal_vein_and_splenic_vein": "portal and splenic veins",
    "pulmonary_vein": "pulmonary veins",
    "costal_cartilages": "costal cartilages",
    "small_bowel": "small bowel",
    "urinary_bladder": "urinary bladder",
    "spinal_cord": "spinal cord",
    "thyroid_gland": "thyroid gland",
    "brachiocephalic_trunk": "brachiocephalic trunk",
    "heart": "heart",
    "sacrum": "sacrum",
    "sternum": "sternum",
    "skull": "skull",
    "vertebrae": "vertebrae",
}
_NOUN = {
    "lung_upper_lobe": "upper lobe of the {side} lung",
    "lung_middle_lobe": "middle lobe of the {side} lung",
    "lung_lower_lobe": "lower lobe of the {side} lung",
    "lung": "{side} lung",
    "adrenal_gland": "{side} adrenal gland",
    "kidney_cyst": "{side} kidney cyst",
    "atrial_appendage": "{side} atrial appendage",
    "iliac_vena": "{side} common iliac vein",
    "iliac_artery": "{side} common iliac artery",
    "subclavian_artery": "{side} subclavian artery",
    "common_carotid_artery": "{side} common carotid artery",
    "brachiocephalic_vein": "{side} brachiocephalic vein",
    "gluteus_maximus": "{side} gluteus maximus",
    "gluteus_medius": "{side} gluteus medius",
    "gluteus_minimus": "{side} gluteus minimus",
    "autochthon": "{side} autochthonous back muscle",
    "iliopsoas": "{side} iliopsoas muscle",
    "clavicula": "{side} clavicle",
    "hip": "{side} hip bone",
}
#: Plain names that are plural: the structure is several things ("portal and splenic veins").
_PLURAL = frozenset({"portal_vein_and_splenic_vein", "pulmonary_vein", "costal_cartilages", "vertebrae"})
#: Last words ending in -s that are singular nouns (Latin and Greek ones among TotalSegmentator's names).
_SINGULAR_S = ("us", "ss", "as", "is", "os")


def side_of(name: str) -> str | None:
    """'left' or 'right' when the name states a side, else None."""
    m = _SIDE_RE.search(name)
    return m.group(1) if m else None


def mirror_name(name: str) -> str:
    """The name with left and right exchanged (``kidney_left`` → ``kidney_right``)."""
    return _SIDE_RE.sub(lambda m: m.group(0).replace(m.group(1), "right" if m.group(1) == "left" else "left"), name)


def unsided(name: str) -> str:
    """The name without its side (``kidney_left`` → ``kidney``; ``rib_left_7`` → ``rib_7``)."""
    return re.sub(r"__+", "_", _SIDE_RE.sub("_", name)).strip("_")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plain_name(name: str) -> str:
    """Plain English for a TotalSegmentator class name (no article)."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    m = re.fullmatch(r"vertebrae_([CTLS]\d+)", name)
    if m:
        return f"{m.group(1)} vertebra"
    m = re.fullmatch(r"rib_(left|right)_(\d+)", name)
    if m:
        return f"{m.group(1)} {_ordinal(int(m.group(2)))} rib"
    side = side_of(name)
    if side:
        base = unsided(name)
        if base in _NOUN:
            return _NOUN[base].format(side=side)
        return f"{side} {base.replace('_', ' ')}"
    return name.replace("_", " ")


def is_plural(name: str) -> bool:
    """Whether :func:`plain_name` of ``name`` is a plural noun phrase (its verbs take "are", "do", "touch").

    TotalSegmentator's plural classes are listed (``costal_cartilages``, ``pulmonary_vein`` → "pulmonary
    veins", ...); any other name is plural when its plain name joins two things with "and" or its last
    word ends in -s but not in a singular Latin or Greek ending ("pancreas", "humerus", "gluteus maximus").
    """
    if name in _PLURAL:
        return True
    plain = plain_name(name)
    last = plain.rsplit(" ", 1)[-1]
    return " and " in plain or (last.endswith("s") and not last.endswith(_SINGULAR_S))


def is_vertebra(name: str) -> bool:
    return name.startswith("vertebrae")
