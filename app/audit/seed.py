import base64
import binascii

SEED_BYTES = 32


def decode_seed(text: str) -> bytes:
    """The Ed25519 seed READINESS_AUDIT_SIGNING_KEY gives: base64 of 32 bytes."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64") from None
    if len(seed) != SEED_BYTES:
        raise ValueError(f"must be base64 of {SEED_BYTES} bytes, not {len(seed)}")
    return seed
