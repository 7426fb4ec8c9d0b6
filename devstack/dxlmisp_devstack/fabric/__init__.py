"""The local DXL fabric of the dev stack: mosquitto over TLS plus a stand-in for the broker's registry.

- ``pki``: a throwaway CA, the broker certificate and one client certificate per role (RSA, ``cryptography``).
- ``broker``: mosquitto's config and process (TLS listener requiring client certs, ``set_tcp_nodelay true``).
- ``config``: ``dxlclient.config`` files in dxlclient's own format.
- ``registry``: the STAND-IN for the OpenDXL broker's service and broker registries
  (``python -m dxlmisp_devstack.fabric.registry CONFIG``). Its docstring lists what the real broker does that
  this fabric does not: one-instance routing, 0x80000001 for unknown services, topic authorization by
  certificate, tenants.

Client side: dxlclient 5.7.0.1 leaves Nagle's algorithm on for its own socket. ``DxlClient._client`` is its
vendored paho client (``pahoproxy.client.Client``); the socket is ``DxlClient._client.socket()`` (the same
object as ``._client._sock``), an ``ssl.SSLSocket``. Setting TCP_NODELAY on it after ``connect()`` works but is
lost on reconnect (paho opens a new socket); a callback assigned to ``DxlClient._client.on_socket_open`` before
``connect()`` runs for every new socket, reconnects included. Measured on this fabric with 64 KB requests and
responses: about 88 ms per round trip with Nagle on at both ends, 44 ms with only the broker's option, 0.6 ms
with both.
"""
