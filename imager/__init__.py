"""imager: device-imaging and certified-erasure station."""

__version__ = "0.1.0"
