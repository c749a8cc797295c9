"""Generated protobuf/gRPC code for proto/isod/v1/isod.proto: do not edit; run `make proto`."""
