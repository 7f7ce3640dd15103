"""HTTP views of the ML node, one module per ML Commons resource."""
