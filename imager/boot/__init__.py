"""The laptops' boot: live system, network boot service, USB stick."""
