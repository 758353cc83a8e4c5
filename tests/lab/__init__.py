"""The lab: the station's own code inside a QEMU guest, against emulated controllers.

build.py makes (once, cached) a Debian 12 kernel + initramfs; vm.py boots it with
emulated drives; record.py saves the tools' outputs into tests/data/lab/.
"""
