"""The laptops' boot: live system, network boot service (proxy-DHCP, TFTP, HTTP), menus."""
