"""Images in a bmaptool-compatible format: a compressed raw disk image, its
block map (bmap v2.0, sha256 per mapped range) and a signed manifest.

- bmap.py: the block map: parse/render the XML, map a sparse file, checksums.
- compress.py: zstd/xz/gzip detection, streaming decompression, compression.
- create.py: `imager image create`: raw sparse image -> .img.zst + .bmap + manifest.
- catalogue.py: the station's local image store (list, get, verify, remove).
- source.py: where the compressed image comes from (a file, or HTTP resumed by Range).
- deploy.py: one decompression stream to N targets, mapped ranges only, O_DIRECT.
- readback.py: read the written ranges back past the page cache (full or sampled).
- after.py, partitions.py: fit the image to its disk, give the system its identity.

The registry side (who may receive an image, the record) is imager.jobs.image
and imager.registry.deployments.
"""
