"""Vision Transformer (pre-norm encoder, class token, learned position embedding)."""

from __future__ import annotations

import keras
from keras import layers

from tfdeepfake.models.common import (
    dense_kwargs,
    image_input,
    logit_head,
    preprocess,
    register_model,
    validate_common,
    validate_rate,
)
from tfdeepfake.models.layers import ClassToken, ClassTokenSelect, PositionEmbedding

VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
"""size -> (hidden dim, depth, heads); the MLP is 4x the hidden dim."""

_LN_EPSILON = 1e-6


def default_patch_size(image_size: int) -> int:
    """16 for ``image_size >= 128``, else ``image_size // 8`` (an 8x8 patch grid)."""
    return 16 if image_size >= 128 else image_size // 8


def encoder_block(
    x: keras.KerasTensor,
    heads: int,
    l2: float,
    name: str,
    *,
    dropout: float,
    attention_dropout: float,
    out_name: str | None = None,
) -> keras.KerasTensor:
    """Pre-norm block: x + MHA(LN(x)); then x + MLP(LN(x)) with a GELU MLP of 4x width."""
    dim = x.shape[-1]
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{name}_ln1")(x)
    y = layers.MultiHeadAttention(
        heads, dim // heads, dropout=attention_dropout, name=f"{name}_attn", **dense_kwargs(l2)
    )(y, y)
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_attn_dropout")(y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"{name}_ln2")(x)
    y = layers.Dense(4 * dim, activation="gelu", name=f"{name}_mlp1", **dense_kwargs(l2))(y)
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_mlp1_dropout")(y)
    y = layers.Dense(dim, name=f"{name}_mlp2", **dense_kwargs(l2))(y)
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_mlp2_dropout")(y)
    return layers.Add(name=out_name or f"{name}_add2")([x, y])


@register_model("vit")
def build_vit(
    image_size: int = 224,
    *,
    l2: float = 1e-4,
    dropout: float = 0.5,
    size: str = "tiny",
    patch_size: int | None = None,
    encoder_dropout: float = 0.1,
    attention_dropout: float = 0.0,
) -> keras.Model:
    """ViT-{tiny,small,base}: patch embedding, class token, position embedding, encoder, logit.

    ``dropout`` is the head dropout; ``encoder_dropout`` / ``attention_dropout`` act inside the
    encoder. ``patch_size=None`` picks :func:`default_patch_size`. ``"features"`` is the last
    encoder block's output (all tokens, ``(b, 1 + patches, dim)``).
    """
    image_size, l2, dropout = validate_common(image_size, l2, dropout)
    if size not in VIT_SIZES:
        raise ValueError(f"Unknown ViT `size` {size!r}. Valid sizes: {', '.join(VIT_SIZES)}.")
    inputs = image_input()
    x = preprocess(inputs, image_size)
    side = int(x.shape[1])  # image_size, or half of it with the "wavelet" input
    if patch_size is None:
        patch_size = default_patch_size(side)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"`patch_size` must be a positive int or None; got {patch_size!r}.")
    if side % patch_size:
        where = f"`image_size` ({image_size})" if side == image_size else \
            f"the {side} px side the patches see (`image_size` {image_size}, halved by the wavelet input)"
        raise ValueError(f"`patch_size` ({patch_size}) must divide {where}.")
    encoder_dropout = validate_rate(encoder_dropout, "encoder_dropout")
    attention_dropout = validate_rate(attention_dropout, "attention_dropout")
    dim, depth, heads = VIT_SIZES[size]
    grid = side // patch_size

    x = layers.Conv2D(dim, patch_size, strides=patch_size, name="patch_embed", **dense_kwargs(l2))(
        x
    )
    x = layers.Reshape((grid * grid, dim), name="patch_tokens")(x)
    x = ClassToken(name="class_token")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    if encoder_dropout > 0:
        x = layers.Dropout(encoder_dropout, name="embedding_dropout")(x)
    for i in range(1, depth + 1):
        x = encoder_block(
            x,
            heads,
            l2,
            f"encoder{i}",
            dropout=encoder_dropout,
            attention_dropout=attention_dropout,
            out_name="features" if i == depth else None,
        )
    x = layers.LayerNormalization(epsilon=_LN_EPSILON, name="final_ln")(x)
    x = ClassTokenSelect(name="class_token_select")(x)
    outputs = logit_head(x, l2, dropout)
    return keras.Model(inputs, outputs, name="vit")
