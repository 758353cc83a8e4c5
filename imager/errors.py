"""One error base class; the subclass tells the caller what to do.

Every message names the thing (device, file, job, value) and says how to fix it.
"""


class ImagerError(Exception):
    """Base class of every error the station reports to a person."""


class UsageError(ImagerError):
    """Bad input from the user (argument, file, value): fix the input and retry."""


class RefusedDevice(ImagerError):
    """The safety guard refuses to write this device. Never overridable for
    root/boot/swap/mounted devices."""

    def __init__(self, device: str, reasons: list[str]) -> None:
        self.device = device
        self.reasons = list(reasons)
        super().__init__(f"refusing to write {device}: " + "; ".join(reasons))


class DeviceError(ImagerError):
    """The device failed or disappeared during an operation."""


class MethodRefused(DeviceError):
    """The drive refused an erase method before erasing anything (command not
    supported, security frozen...): the plan's next method may be tried."""


class DeviceGone(DeviceError):
    """The device disappeared (unplugged, driver stopped answering)."""


class NotYet(ImagerError):
    """The request comes too early (e.g. before what it depends on is reported):
    ask again later."""


class Unfit(UsageError):
    """An agent's event does not fit what the station decided (its plan, its
    drive, the job's history): refused, and the job it names fails with it."""

    def __init__(self, job_id: int | None, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class NotFound(ImagerError):
    """A registry object (job, donor, donation...) does not exist."""


class RegistryError(ImagerError):
    """The registry cannot be opened or migrated."""
