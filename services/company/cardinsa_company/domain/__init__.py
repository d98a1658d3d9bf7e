"""Company domain: lifecycle, field rules, reference data. No ORM, no gRPC, no protobuf."""
