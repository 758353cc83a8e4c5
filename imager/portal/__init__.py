"""The network's portal: the Internet-facing role of imager. It holds no signing
key: stations push what they signed (imager.station.push), the portal checks it
all (receive) and serves the public verification from it (lookup, web); donors'
accounts come next.

The portal imports neither imager.station nor imager.agent (the import-linter
layers say so), and serves none of their routes (tests/test_portal_routes.py)."""
