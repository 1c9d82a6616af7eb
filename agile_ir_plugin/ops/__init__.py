"""Attention backends and window utilities shared by the archs (pure torch)."""
from .attention import (FusedAttentionError, attention, available_backends, choose_backend,  # noqa: F401
                        resolve_backend)
from .window import (pad_to_multiple, relative_position_index, shifted_window_mask, window_partition,  # noqa: F401
                     window_reverse)
