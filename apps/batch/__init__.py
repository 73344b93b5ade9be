"""Offline batch reconstruction: ``face3d batch INPUT -o OUT`` (local processes or Ray).

See ``apps.batch.runner`` for the output layout and ``docs/cli.md`` for the command.
"""

from .manifest import Item, load_items
from .runner import BatchReport, run_batch
from .work import ItemResult, WorkOutput, reconstruct_work

__all__ = ["BatchReport", "Item", "ItemResult", "WorkOutput", "load_items", "reconstruct_work", "run_batch"]
