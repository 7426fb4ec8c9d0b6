"""Detections on the fabric back into MISP: the subscriptions, a SQLite journal of what arrived, one reader
per message format (a message in, sightings and attributes out), and applying them to MISP."""
