"""The request path: a DXL request in, a Response or an ErrorResponse out.

``topics`` is the topic table (which handler serves each API name), ``handler`` the DXL adapter around it,
``legacy`` and ``legacyargs`` the 2.4-era names and their argument specs, ``passthrough`` the allow-listed
PyMISP methods, ``rawpath`` and ``rawjson`` the hot read path that forwards MISP's own bytes.
"""
