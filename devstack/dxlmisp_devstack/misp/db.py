"""The dev MISP server's SQLite schema and connection.

One connection serves every thread (``check_same_thread=False``); :class:`~devstack.misp.models.MispModels`
guards it with one lock, so reads and writes never interleave. A file database runs in WAL mode with
``synchronous=NORMAL``: each committed change survives a restart of the server (a crash of the machine may
lose the last commits, which is fine for a dev tool). ``:memory:`` (the default) keeps nothing.

Values are stored with their native SQLite types (integers for ids, flags and epoch timestamps); the
serializer turns them into MISP's wire types (ids, counts and timestamps as strings, flags as booleans).
"""
from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    info TEXT NOT NULL,
    date TEXT NOT NULL,
    threat_level_id INTEGER NOT NULL DEFAULT 4,
    analysis INTEGER NOT NULL DEFAULT 0,
    distribution INTEGER NOT NULL DEFAULT 1,
    sharing_group_id INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 0,
    publish_timestamp INTEGER NOT NULL DEFAULT 0,
    timestamp INTEGER NOT NULL,
    sighting_timestamp INTEGER NOT NULL DEFAULT 0,
    org_id INTEGER NOT NULL DEFAULT 1,
    orgc_id INTEGER NOT NULL DEFAULT 1,
    locked INTEGER NOT NULL DEFAULT 0,
    proposal_email_lock INTEGER NOT NULL DEFAULT 0,
    disable_correlation INTEGER NOT NULL DEFAULT 0,
    extends_uuid TEXT NOT NULL DEFAULT '',
    event_creator_email TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_timestamp ON events (timestamp);
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    meta_category TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    template_uuid TEXT NOT NULL DEFAULT '',
    template_version TEXT NOT NULL DEFAULT '0',
    timestamp INTEGER NOT NULL,
    distribution INTEGER NOT NULL DEFAULT 5,
    sharing_group_id INTEGER NOT NULL DEFAULT 0,
    comment TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT,
    last_seen TEXT
);
CREATE INDEX IF NOT EXISTS objects_event ON objects (event_id);
CREATE TABLE IF NOT EXISTS attributes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    object_id INTEGER NOT NULL DEFAULT 0,
    object_relation TEXT,
    category TEXT NOT NULL,
    type TEXT NOT NULL,
    value1 TEXT NOT NULL,
    value2 TEXT NOT NULL DEFAULT '',
    to_ids INTEGER NOT NULL DEFAULT 0,
    timestamp INTEGER NOT NULL,
    distribution INTEGER NOT NULL DEFAULT 5,
    sharing_group_id INTEGER NOT NULL DEFAULT 0,
    comment TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    disable_correlation INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT,
    last_seen TEXT
);
CREATE INDEX IF NOT EXISTS attributes_event ON attributes (event_id);
CREATE INDEX IF NOT EXISTS attributes_value1 ON attributes (value1 COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS attributes_value2 ON attributes (value2 COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    colour TEXT NOT NULL,
    exportable INTEGER NOT NULL DEFAULT 1,
    hide_tag INTEGER NOT NULL DEFAULT 0,
    numerical_value INTEGER,
    local_only INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS event_tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    local INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS event_tags_event ON event_tags (event_id);
CREATE TABLE IF NOT EXISTS attribute_tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    attribute_id INTEGER NOT NULL REFERENCES attributes (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL,
    tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    local INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attribute_tags_attribute ON attribute_tags (attribute_id);
CREATE INDEX IF NOT EXISTS attribute_tags_event ON attribute_tags (event_id);
CREATE TABLE IF NOT EXISTS sightings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    attribute_id INTEGER NOT NULL REFERENCES attributes (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL,
    org_id INTEGER NOT NULL DEFAULT 1,
    date_sighting INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    type INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sightings_attribute ON sightings (attribute_id);
CREATE INDEX IF NOT EXISTS sightings_event ON sightings (event_id);
CREATE TABLE IF NOT EXISTS shadow_attributes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    value TEXT NOT NULL,
    to_ids INTEGER NOT NULL DEFAULT 0,
    comment TEXT NOT NULL DEFAULT '',
    timestamp INTEGER NOT NULL
);
"""

# Tables the dev-only reset empties, children first.
DATA_TABLES = ("shadow_attributes", "sightings", "attribute_tags", "event_tags", "attributes", "objects", "events", "tags")


def connect(path: str = ":memory:") -> sqlite3.Connection:
    """Open (and create if needed) the database at ``path``; rows come back as :class:`sqlite3.Row`."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA)
    return conn
