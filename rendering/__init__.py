"""Cells -> pictures, with no Dash: ``raster`` (datashader aggregation + colour tables -> RGBA), ``colors``
(hex parsing, colour tables, colour bars), ``png`` (fast PNG encoding), ``figures`` (PNG/SVG/PDF publication
figures with matplotlib)."""
