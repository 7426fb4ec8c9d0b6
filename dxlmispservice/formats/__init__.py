"""MISP events in the formats the SOC's other systems read (STIX 2.1, the STIX 1.2 Incident, Cisco XDR CTIM
bundles, XSOAR incidents): one pure module per format, a MISP event in and a document out, no I/O."""
