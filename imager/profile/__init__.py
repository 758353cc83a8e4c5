"""OS profiles: the harmonised system every laptop leaves with.

A profile is data (`profiles/<name>/profile.yaml`): the Debian suite, packages,
locale, desktop, browser policies, welcome content and first boot. From it come
the profile's own `.deb` (policies, welcome page, first-boot dialog, message
queue) and a reproducible disk image (mmdebstrap, GPT, GRUB for BIOS and UEFI
with shim) that goes into the station's image catalogue.
"""
