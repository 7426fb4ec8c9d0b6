"""What the service publishes on the fabric: the confirmed publisher (``publisher``), MISP's ZeroMQ
notifications forwarded as DXL events (``notifications``), and the replayable feed with its saved position
(``feed``, ``feedstate``)."""
