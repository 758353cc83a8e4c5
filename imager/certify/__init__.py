"""Certificates: canonical records, signatures, PDF rendering, the ledger and
offline verification.

The station signs; agents never hold the key. A donor verifies a document with
`imager cert verify FILE --trust station.pem`, offline.
"""
