"""What runs on the laptop, where imager is not installed: stdlib-only scripts and
their systemd units, installed by the profile's package (packaging.py lists them)."""
