"""The HTTP edge and the browser API: app assembly, edge rules, the cookie carrier, OpenAPI."""
