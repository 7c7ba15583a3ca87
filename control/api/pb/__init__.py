"""Generated protobuf and gRPC modules (scripts/gen-proto); do not edit."""
