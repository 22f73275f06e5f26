"""State-dict key map from the block names before :class:`~hippos.layers.Block` to today's.

Classifiers and language models had two blocks: ``ResidualBlock`` (attributes ``layer``,
``norm``) and ``LMBlock`` (``norm1``, ``mixer``, ``norm2``, ``mlp``). One ``Block`` now names
them ``norm``, ``mixer``, ``mlp_norm``, ``mlp``; only the names changed, not the tensors::

    [backbone.]blocks.{i}.layer.*   ->  [backbone.]blocks.{i}.mixer.*      (classifier)
    blocks.{i}.norm1.*              ->  blocks.{i}.norm.*                  (language model)
    blocks.{i}.norm2.*              ->  blocks.{i}.mlp_norm.*              (language model)

Everything else (embeddings, encoder, ``norm`` of a classifier block, ``mlp.fc1``/``mlp.fc2``,
final norm, head) kept its name. The map is idempotent: today's keys come back unchanged.
"""

from __future__ import annotations

import re
from collections import OrderedDict

__all__ = ["upgrade_key", "upgrade_state_dict"]

_RENAMES = {"layer": "mixer", "norm1": "norm", "norm2": "mlp_norm"}
# the last "blocks.{i}." of a key, followed by an old attribute name (a whole name component)
_OLD = re.compile(r"^((?:.*\.)?blocks\.\d+\.)(layer|norm1|norm2)(?=\.|$)")


def upgrade_key(key: str) -> str:
    """One parameter, buffer or module name in today's spelling (unchanged when it already is)."""
    return _OLD.sub(lambda m: m.group(1) + _RENAMES[m.group(2)], key, count=1)


def upgrade_state_dict(sd: dict) -> dict:
    """A state dict (e.g. from an old checkpoint) with every key in today's names; a new dict in
    the same order (torch's ``_metadata``, if present, renamed alike). Raises ``ValueError`` when
    ``sd`` mixes old and new names for the same tensor (nothing sound to load then)."""
    if not isinstance(sd, dict):
        raise TypeError(f"upgrade_state_dict takes a state dict (a dict of tensors), got {type(sd).__name__}")
    out = OrderedDict()
    for key, value in sd.items():
        new = upgrade_key(key)
        if new in out or (new != key and new in sd):
            raise ValueError(
                f"state dict holds both {key!r} (old block names) and {new!r} (new): a mix of two formats, "
                "refused (save it from one model, or upgrade the old keys alone)"
            )
        out[new] = value
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        out._metadata = OrderedDict((upgrade_key(k), v) for k, v in meta.items())
    return out
