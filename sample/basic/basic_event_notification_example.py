"""Receive MISP's ZeroMQ notifications as DXL events: create an event and print the notification it causes.

The service forwards each configured MISP ZeroMQ topic (``zeroMqNotificationTopics``) as a DXL event on
``/opendxl-misp/event/zeromq-notifications[/<serviceUniqueId>]/<zmq topic>``. This sample subscribes to
the ``misp_json_event`` notifications, asks the service for a new event (``new_event`` must be in
``apiNames``) and prints the notification MISP sends for it.

Needs ``misp_json_event`` in the service's ``zeroMqNotificationTopics``, and MISP's ZeroMQ plugin on.
"""
from __future__ import annotations

import os
import sys
import threading
import uuid

from dxlclient.callbacks import EventCallback
from dxlclient.client import DxlClient
from dxlclient.message import Event, Message, Request
from dxlbootstrap.util import MessageUtils

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import load_client_config, logger  # noqa: E402

NOTIFICATION_TOPIC = "/opendxl-misp/event/zeromq-notifications/misp_json_event"
REQUEST_TOPIC = "/opendxl-misp/service/misp-api/new_event"
WAIT_SECONDS = 30


class NotificationPrinter(EventCallback):
    """Prints each notification; sets ``found`` once the one about our event arrives."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.found = threading.Event()

    def on_event(self, event: Event) -> None:
        notification = MessageUtils.json_payload_to_dict(event)
        print("Notification on '{}':\n{}".format(
            event.destination_topic, MessageUtils.dict_to_json(notification, pretty_print=True)))
        if self.marker in MessageUtils.dict_to_json(notification):
            self.found.set()


def main() -> None:
    """Subscribe, create one event, and wait for MISP's notification about it."""
    marker = "OpenDXL MISP notification example {}".format(uuid.uuid4())
    with DxlClient(load_client_config()) as client:
        client.connect()
        logger.info("Connected to DXL fabric.")

        printer = NotificationPrinter(marker)
        client.add_event_callback(NOTIFICATION_TOPIC, printer)

        request = Request(REQUEST_TOPIC)
        MessageUtils.dict_to_json_payload(request, {
            "distribution": 0, "info": marker, "analysis": 0, "threat_level_id": 3})
        response = client.sync_request(request, timeout=30)
        if response.message_type == Message.MESSAGE_TYPE_ERROR:
            print("Error invoking service with topic '{}': {} ({})".format(
                REQUEST_TOPIC, response.error_message, response.error_code))
            sys.exit(1)
        logger.info("Event created; waiting for its notification on %s", NOTIFICATION_TOPIC)

        if not printer.found.wait(WAIT_SECONDS):
            print("No notification about the new event within {} s: is misp_json_event in the service's "
                  "zeroMqNotificationTopics, and MISP's ZeroMQ plugin on?".format(WAIT_SECONDS))
            sys.exit(1)


if __name__ == "__main__":
    main()
