"""The laptops' boot: the live system, the network boot service (proxy-DHCP, TFTP,
HTTP, menus) and the USB stick.

The live system (`imager boot build`):
- `stages`: the `IMAGER-LIVE stage=...` lines the live system prints on its serial
  console (tests and the station's flow tests match them);
- `cmdline`: the kernel command line the boot service writes (`imager.station=`...);
- `screen`: the French text the laptop's own screen shows at each stage;
- `initscript`: the live system's PID 1 (a shell script) and its DHCP script;
- `session`, `network`: what that init runs: network, the agent, the screen;
- `guest`: build steps shared with the QEMU lab's guest (mmdebstrap, kernel and
  modules, PyPI wheels for the guest's Python, the reproducible cpio | zstd);
- `live`: the live system's artefacts, cached by content.
"""
