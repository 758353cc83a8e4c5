"""The first-boot program as it runs on the beneficiary's laptop.

Shipped by the profile's package as /usr/lib/<slug>-accueil/python/firstboot/ and
run as `python3 -m firstboot` (see __main__.py); standard library only, plus GTK
(python3-gi) for the dialog itself. Its modules import each other relatively, so
the same files are `imager.profile.firstboot.laptop` in this repository.
"""
