"""Create a MISP event with attributes, a TLP tag, an ATT&CK technique and a sighting through the MISP DXL
service, then export it in each format the service converts to and print each document.

Needs ``add_event``, ``add_sighting`` and ``export_event`` in the service's ``apiNames``.
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

#: The formats export_event converts to: Cisco XDR's CTIM, STIX 2.1, the STIX 1.2 Incident, Cortex XSOAR.
FORMATS = ("ctim", "stix2", "stix1", "xsoar")


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
    """Make the event, sight one of its attributes, and print the event in each format."""
    with DxlClient(load_client_config()) as client:
        client.connect()
        logger.info("Connected to DXL fabric.")

        # Create the event: two indicators, a TLP marking and an ATT&CK technique
        made = invoke(client, "add_event", {"event": {"Event": {
            "info": "OpenDXL MISP export example",
            "distribution": 0,
            "threat_level_id": 2,
            "analysis": 1,
            "Tag": [{"name": "tlp:amber"},
                    {"name": 'misp-galaxy:mitre-attack-pattern="Phishing - T1566"'}],
            "Attribute": [
                {"type": "domain", "value": "login-update.example.com", "to_ids": True},
                {"type": "ip-dst", "value": "203.0.113.77", "to_ids": True},
            ],
        }}})["Event"]
        print("Created event {} ({})".format(made["id"], made["uuid"]))

        # A sensor saw the domain: add a sighting of it
        domain = next(a for a in made["Attribute"] if a["type"] == "domain")
        invoke(client, "add_sighting", {"sighting": {"source": "export example sensor", "type": "0"},
                                        "attribute": domain["uuid"]})

        # Export the event in each format
        for format_name in FORMATS:
            answer = invoke(client, "export_event", {"event": made["uuid"], "format": format_name})
            print("Response to the export_event request ({}, {}):".format(format_name, answer["content_type"]))
            if isinstance(answer["document"], str):  # stix1 is XML text
                print(answer["document"])
            else:
                print(MessageUtils.dict_to_json(answer["document"], pretty_print=True))
            if answer["skipped"]:
                print("Left out of the {} document: {}".format(format_name, answer["skipped"]))


if __name__ == "__main__":
    main()
