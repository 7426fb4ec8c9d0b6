"""Create a MISP event through the MISP DXL service and print the service's answer as JSON.

Needs ``new_event`` in the service's ``apiNames``.
"""
from __future__ import annotations

import os
import sys

from dxlclient.client import DxlClient
from dxlclient.message import Message, Request
from dxlbootstrap.util import MessageUtils

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import load_client_config, logger  # noqa: E402

REQUEST_TOPIC = "/opendxl-misp/service/misp-api/new_event"


def main() -> None:
    """Send one new_event request and print the event MISP stored."""
    with DxlClient(load_client_config()) as client:
        client.connect()
        logger.info("Connected to DXL fabric.")

        # The payload holds the fields of the new event
        request = Request(REQUEST_TOPIC)
        MessageUtils.dict_to_json_payload(request, {
            "distribution": 0,
            "info": "OpenDXL MISP new event example",
            "analysis": 0,
            "threat_level_id": 3,
        })

        response = client.sync_request(request, timeout=30)
        if response.message_type == Message.MESSAGE_TYPE_ERROR:
            print("Error invoking service with topic '{}': {} ({})".format(
                REQUEST_TOPIC, response.error_message, response.error_code))
            sys.exit(1)

        response_dict = MessageUtils.json_payload_to_dict(response)
        print("Response to the new event request:\n{}".format(
            MessageUtils.dict_to_json(response_dict, pretty_print=True)))


if __name__ == "__main__":
    main()
