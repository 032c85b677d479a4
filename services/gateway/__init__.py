"""The FHIR R4 gateway: FHIR REST over HTTPS in front of the gRPC services; it owns no data."""
