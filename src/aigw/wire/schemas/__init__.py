"""Typed schemas of every client request the gateway reads, one module per API, checked at the
surface before any work is done: nesting depth, JSON types, required fields and numeric bounds
(the bounds are data, in `bounds`). A body that does not fit gets a 400 naming the field, in the
surface's own error shape, rather than a 500 from a translator that met a list where it expected
a string. Unknown fields are allowed everywhere: vendor features pass through.
"""

from aigw.wire.schemas.check import Schema, check_depth, conform

__all__ = ["Schema", "check_depth", "conform"]
