"""Search MISP's attributes for a value through the MISP DXL service and print the answer as JSON.

So that there is something to find, the sample first stores an event with one ``ip-dst`` attribute
(``new_event``, then ``add_named_attribute``); then it searches the attributes controller for that
value (``search``). Needs ``new_event``, ``add_named_attribute`` and ``search`` in the service's
``apiNames``.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from dxlclient.client import DxlClient
from dxlclient.message import Message, Request
from dxlbootstrap.util import MessageUtils

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import load_client_config, logger  # noqa: E402

SERVICE_TOPIC = "/opendxl-misp/service/misp-api"
SEARCH_VALUE = "198.51.100.7"


def invoke(client: DxlClient, api_name: str, payload: dict[str, Any]) -> Any:
    """Send ``payload`` to the service's ``api_name`` topic and return the answer decoded; exit on an error."""
    request_topic = "{}/{}".format(SERVICE_TOPIC, api_name)
    request = Request(request_topic)
    MessageUtils.dict_to_json_payload(request, payload)
    response = client.sync_request(request, timeout=30)
    if response.message_type == Message.MESSAGE_TYPE_ERROR:
        print("Error invoking service with topic '{}': {} ({})".format(
            request_topic, response.error_message, response.error_code))
        sys.exit(1)
    return MessageUtils.json_payload_to_dict(response)


def main() -> None:
    """Store an event with one attribute, then find the attribute by its value."""
    with DxlClient(load_client_config()) as client:
        client.connect()
        logger.info("Connected to DXL fabric.")

        # Something to find: an event with one ip-dst attribute
        new_event = invoke(client, "new_event", {
            "distribution": 0,
            "info": "OpenDXL MISP search example",
            "analysis": 0,
            "threat_level_id": 3,
        })
        misp_event_id = new_event["Event"]["id"]
        invoke(client, "add_named_attribute", {
            "event": misp_event_id,
            "type_value": "ip-dst",
            "value": SEARCH_VALUE,
            "comment": "Added by the OpenDXL MISP search example",
        })
        logger.info("Stored event %s with the attribute %s.", misp_event_id, SEARCH_VALUE)

        # Search the attributes controller for the value, first page of up to 10 results
        search_response_dict = invoke(client, "search", {
            "controller": "attributes",
            "value": SEARCH_VALUE,
            "limit": 10,
            "page": 1,
        })
        print("Response to the search request for the value {}:\n{}".format(
            SEARCH_VALUE, MessageUtils.dict_to_json(search_response_dict, pretty_print=True)))


if __name__ == "__main__":
    main()
