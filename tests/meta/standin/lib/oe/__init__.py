"""Stand-in for OE-core's `oe` Python package in meta-rustimage's tests
(written for the tests; no OE-core code). OE-core adds its lib/ with
`addpylib ${LAYERDIR}/lib oe` and imports the modules named here."""

BBIMPORTS = ["go"]
