"""What a release needs of the store (services.mongo.schema): index names that never come back with
other keys, and which leftovers a contract may drop."""

from __future__ import annotations

import hashlib
import json

from services.mongo.schema import Survey, version_of, view_indexes
from services.query import INDEX_VERSION

# The keys of every list index, per version, as a digest. A change of ListIndex's keys must
# come with a new INDEX_VERSION (and a line here): an index name is never reused with other
# keys, or a rolling deploy would meet IndexKeySpecsConflict and old processes would hint an
# index that is not the one they planned for.
KEYS_OF_VERSION = {1: "ee46eb4c0ff3"}


def _digest(descending: bool) -> str:
    prefix = f"list_v{INDEX_VERSION}_"
    keys = [[i.name.removeprefix(prefix), i.keys] for i in view_indexes("threads", descending)]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:12]


def test_an_index_name_is_never_reused_with_other_keys() -> None:
    assert INDEX_VERSION in KEYS_OF_VERSION, "add this version's digest to KEYS_OF_VERSION"
    assert _digest(descending=True) == KEYS_OF_VERSION[INDEX_VERSION], (
        "the list indexes' keys changed: bump services.query.INDEX_VERSION"
    )
    names = [i.name for i in view_indexes("threads", True)]
    assert len(set(names)) == len(names)
    assert all(version_of(n) == INDEX_VERSION for n in names)


def test_versions_are_read_from_names() -> None:
    assert version_of("list_v1_org") == 1
    assert version_of("list_v12_user_desc") == 12
    assert version_of("list_org") == 0  # the releases before migrations
    assert version_of("list_by_org") == 0
    assert version_of("_id_") is None
    assert version_of("by_org") is None  # an operator's own index: never ours to drop


def test_contract_takes_older_and_unused_list_indexes_only() -> None:
    wanted = view_indexes("threads", descending=False)
    theirs = {i.name: i.keys for i in wanted}
    found = Survey(
        {"threads"},
        {
            "threads": {
                **theirs,
                "_id_": (("_id", 1),),
                "list_org": (("organization_id", 1),),  # unversioned, other keys
                f"list_v{INDEX_VERSION}_org_desc": (("organization_id", 1),),  # this version's,
                # unused on a store that walks indexes both ways
                f"list_v{INDEX_VERSION + 1}_org": (("organization_id", 1),),  # a newer release's
                "by_org": (("organization_id", 1),),
            }
        },
    )
    assert sorted(found.older("threads", wanted)) == ["list_org", f"list_v{INDEX_VERSION}_org_desc"]
    assert found.newer("threads") == [f"list_v{INDEX_VERSION + 1}_org"]
    assert found.lacks(["threads"], wanted) == []


def test_what_is_missing_is_said_one_line_each() -> None:
    wanted = view_indexes("threads", descending=False)
    first = wanted[0]
    found = Survey({"threads"}, {"threads": {first.name: (("organization_id", 1),)}})
    lacks = found.lacks(["views", "threads"], wanted[:2])
    assert lacks == [
        "missing collection views",
        f"index {first.name} on threads has keys (('organization_id', 1),)",
        f"missing index {wanted[1].name} on threads",
    ]


def test_an_index_is_known_by_its_keys_whatever_its_name() -> None:
    # the releases before migrations made today's keys under unversioned names
    wanted = view_indexes("threads", descending=True)
    found = Survey({"threads"}, {"threads": {f"list_{i.name}": i.keys for i in wanted}})
    assert found.lacks(["threads"], wanted) == []
    assert found.older("threads", wanted) == []
