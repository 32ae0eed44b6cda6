"""The re-drive marks in MongoDB (collection ``dlq_redriven``, ``_id`` the dead letter's
services.redrive.mark_id): the adapter of services.redrive.RedriveMarks. The collection is
``threadview-admin migrate``'s to create (services.mongo.schema), never this adapter's."""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.mongo.schema import require
from services.redrive import Mark, Target

MARKS = "dlq_redriven"


class MongoRedriveMarks:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.marks = database[MARKS]

    @classmethod
    async def checked(cls, database: AsyncDatabase[dict[str, Any]]) -> MongoRedriveMarks:
        """The marks of ``database``, once it is known to hold their collection.

        Raises:
            services.mongo.schema.NotMigrated: it does not.
        """
        await require(database, False, views=(), catalog=(MARKS,))
        return cls(database)

    async def find(self, mark_id: str) -> Target | None:
        marked = await self.marks.find_one({"_id": mark_id})
        if marked is None:
            return None
        return Target(marked["topic"], marked["partition"], marked["offset"])

    async def add(self, mark: Mark) -> None:
        with contextlib.suppress(DuplicateKeyError):  # another redrive marked it first
            await self.marks.insert_one(
                {
                    "_id": mark.id,
                    "redriven_at": mark.redriven_at,
                    "topic": mark.target.topic,
                    "partition": mark.target.partition,
                    "offset": mark.target.offset,
                    "reason": mark.reason,
                }
            )
