"""Images in a bmaptool-compatible format: a compressed raw disk image, its
block map (bmap v2.0, sha256 per mapped range) and a signed manifest.

- bmap.py: the block map: parse/render the XML, map a sparse file, checksums.
- compress.py: zstd/xz/gzip detection, streaming decompression, compression.
- create.py: `imager image create`: raw sparse image -> .img.zst + .bmap + manifest.
- catalogue.py: the station's local image store (list, get, verify, remove).
"""
