"""``DBOS``'s patching: a workflow's code changed under the workflows running it."""

from __future__ import annotations

from .._engine import patches
from .._engine.engine import get_engine


class PatchAPI:
    @classmethod
    def patch(cls, patch_name: str) -> bool:
        """In a workflow's code, whether this execution takes the new code path:
        True for a workflow that had not passed this point before the patch,
        False for one that had (and so replays the old path). Decided once and
        checkpointed; needs ``enable_patching`` in the configuration."""
        return patches.patch(get_engine("DBOS.patch()"), patch_name)

    @classmethod
    async def patch_async(cls, patch_name: str) -> bool:
        """``patch`` for async code."""
        return await patches.patch_async(get_engine("DBOS.patch_async()"), patch_name)

    @classmethod
    def deprecate_patch(cls, patch_name: str) -> bool:
        """What replaces ``patch`` once the old code path is gone: steps over the
        marker of a workflow that recorded one, records none, and returns True."""
        return patches.deprecate_patch(get_engine("DBOS.deprecate_patch()"), patch_name)

    @classmethod
    async def deprecate_patch_async(cls, patch_name: str) -> bool:
        """``deprecate_patch`` for async code."""
        return await patches.deprecate_patch_async(get_engine("DBOS.deprecate_patch_async()"), patch_name)
