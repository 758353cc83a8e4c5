"""The first boot: the beneficiary makes their own account on their laptop.

No account and no shared password come with the image (root is locked). At the
first boot a simple French dialog (English on request) asks the person's name and
a password, makes their account (with sudo: the beneficiary owns the machine),
names the machine from its asset tag, then hands over to LightDM. `laptop/` is the
program shipped to the laptop (standard library + GTK); `firstboot_payload(slug)`
puts it, its systemd unit and LightDM's setting into the profile's package.
"""

from imager.profile.firstboot.ship import DEPENDS, firstboot_payload

__all__ = ["DEPENDS", "firstboot_payload"]
