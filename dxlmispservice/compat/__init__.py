"""One module per dependency whose private parts the service uses (``dxlclient`` with the paho it vendors,
``dxlbootstrap``, ``pymisp``). Each says what it uses and why, and has ``missing()``: the private parts that
the installed version no longer has, which ``tests/compat/`` turns into a clear failure after an upgrade."""
