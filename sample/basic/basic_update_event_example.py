"""Create a MISP event, add an internal comment to it, tag the comment, add a sighting of the comment,
then search for the event: five requests to the MISP DXL service, each answer printed as JSON.

Needs ``new_event``, ``add_internal_comment``, ``tag``, ``sighting`` and ``search`` in the service's
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


def invoke(client: DxlClient, api_name: str, payload: dict[str, Any], what: str,
           exit_on_error: bool = True) -> Any:
    """Send ``payload`` to the service's ``api_name`` topic, print the answer and return it decoded."""
    request_topic = "{}/{}".format(SERVICE_TOPIC, api_name)
    request = Request(request_topic)
    MessageUtils.dict_to_json_payload(request, payload)
    response = client.sync_request(request, timeout=30)
    if response.message_type == Message.MESSAGE_TYPE_ERROR:
        print("Error invoking service with topic '{}': {} ({})".format(
            request_topic, response.error_message, response.error_code))
        if exit_on_error:
            sys.exit(1)
        return None
    response_dict = MessageUtils.json_payload_to_dict(response)
    print("Response to the {}:\n{}".format(
        what, MessageUtils.dict_to_json(response_dict, pretty_print=True)))
    return response_dict


def main() -> None:
    """Run the five requests in order, each one using the ids the previous answers carried."""
    with DxlClient(load_client_config()) as client:
        client.connect()
        logger.info("Connected to DXL fabric.")

        # Create the event
        new_event = invoke(client, "new_event", {
            "distribution": 3,
            "info": "OpenDXL MISP update event example",
            "analysis": 1,
            "threat_level_id": 3,
        }, "new event request")
        misp_event_id = new_event["Event"]["id"]

        # Add an internal comment attribute to the event
        comment = invoke(client, "add_internal_comment", {
            "event": misp_event_id,
            "reference": "Added by the OpenDXL MISP update event example",
            "comment": "This is only a test",
        }, "add internal comment request")
        internal_comment_attribute_id = comment[0]["Attribute"]["uuid"]

        # Tag the internal comment attribute
        invoke(client, "tag", {
            "uuid": internal_comment_attribute_id,
            "tag": "Tagged by the OpenDXL MISP update event example",
        }, "tag request")

        # Add a sighting of the internal comment attribute
        invoke(client, "sighting", {
            "uuid": internal_comment_attribute_id,
            "type": "0",
            "source": "Seen by the OpenDXL MISP update event example",
        }, "sighting request")

        # Read the event back, with its attribute, tag and sighting
        invoke(client, "search", {
            "eventid": misp_event_id,
        }, "search request for the new MISP event", exit_on_error=False)


if __name__ == "__main__":
    main()
