"""The medrelay services; each talks to the others only through the generated gRPC stubs."""
