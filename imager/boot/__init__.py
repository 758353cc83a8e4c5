"""The laptops' boot: the live system, the network boot service (proxy-DHCP, TFTP,
HTTP, menus) and the USB stick."""
