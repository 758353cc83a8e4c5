"""The board's "network boots" panel: the laptops the boot service saw lately
(imager.registry.netboot), how far each boot went and, when one stopped at a
known cause (a Secure Boot refusal above all), what it means and what to do, in
plain words for the bench (no command line there: what needs one goes to a
coordinator)."""

from __future__ import annotations

from typing import Any

from imager.registry import netboot
from imager.station.service import Station
from imager.store.models import BootSighting

# stage -> (French, English): where the boot is
STAGES: dict[str, tuple[str, str]] = {
    "offered": ("a demandé à démarrer sur le réseau", "asked to boot from the network"),
    "shim": ("a reçu le premier programme de démarrage (shim)",
             "received the first boot program (shim)"),
    "undionly": ("a reçu iPXE", "received iPXE"),
    "snponly": ("a reçu iPXE", "received iPXE"),
    "grub": ("a reçu GRUB", "received GRUB"),
    "config": ("GRUB ou iPXE a démarré", "GRUB or iPXE started"),
    "asked": ("a demandé à la station quoi faire", "asked the station what to do"),
    "kernel": ("charge le système de la station", "is loading the station's system"),
    "initrd": ("démarre le système de la station", "is starting the station's system"),
    "enrolled": ("est relié à la station", "is connected to the station"),
}
DECISIONS: dict[str, tuple[str, str]] = {
    "live": ("système de la station", "the station's system"),
    "pairing": ("système de la station, code d'appairage", "the station's system, pairing code"),
    "menu": ("menu (ordinateur inconnu)", "menu (unknown computer)"),
    "local": ("son propre disque", "its own disk"),
}
UPDATE = ("Demandez à un coordinateur de mettre à jour la station (paquets shim-signed et "
          "grub-efi-amd64-signed, puis «\u00a0imager boot build --force\u00a0»).",
          "Ask a coordinator to update the station (packages shim-signed and "
          "grub-efi-amd64-signed, then `imager boot build --force`).")
# problem -> (title, what it means, what to do), each (French, English)
PROBLEMS: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]] = {
    "firmware_refused_shim": (
        ("Secure Boot a refusé le démarrage", "Secure Boot refused the boot"),
        ("Le portable a reçu le programme de démarrage de la station (shim) et l'a refusé. "
         "C'est souvent un ancien PC Windows : son Secure Boot n'accepte que Windows, ou il a "
         "appris à refuser les anciens programmes de démarrage.",
         "The laptop received the station's boot program (shim) and refused it. It is often "
         "an ex-Windows PC: its Secure Boot accepts only Windows, or it learnt to refuse old "
         "boot programs."),
        ("Allumez le portable et ouvrez ses réglages (touche F1, F2, F10 ou Suppr). Dans "
         "«\u00a0Secure Boot\u00a0», activez «\u00a0Microsoft UEFI CA\u00a0» (autorité "
         "tierce, «\u00a03rd party\u00a0»), "
         "puis redémarrez. Si l'option n'existe pas : désactivez Secure Boot le temps de "
         "l'effacement. Si cela ne suffit pas : " + UPDATE[0][0].lower() + UPDATE[0][1:],
         "Switch the laptop on and open its settings (F1, F2, F10 or Del key). Under "
         "“Secure Boot”, enable the “Microsoft UEFI CA” (third party), then restart. If "
         "there is no such option: turn Secure Boot off for the erasure. If that is not "
         "enough: " + UPDATE[1][0].lower() + UPDATE[1][1:])),
    "shim_refused_grub": (
        ("Secure Boot a refusé GRUB", "Secure Boot refused GRUB"),
        ("Le premier programme (shim) a démarré, mais il a refusé le suivant (GRUB) : le "
         "portable connaît une liste de refus (SBAT) plus récente que la station.",
         "The first program (shim) started, but it refused the next one (GRUB): the laptop "
         "knows a newer refusal list (SBAT) than the station."),
        (UPDATE[0] + " En attendant : désactivez Secure Boot pour ce portable.",
         UPDATE[1] + " Meanwhile: turn Secure Boot off on this laptop.")),
    "kernel_refused": (
        ("Le système de la station a été refusé", "The station's system was refused"),
        ("GRUB a chargé le noyau du système de la station mais ne l'a pas lancé : Secure Boot "
         "a refusé sa signature, ou le portable n'a pas assez de mémoire.",
         "GRUB loaded the station system's kernel but did not start it: Secure Boot refused "
         "its signature, or the laptop has too little memory."),
        (UPDATE[0] + " En attendant : désactivez Secure Boot pour ce portable.",
         UPDATE[1] + " Meanwhile: turn Secure Boot off on this laptop.")),
    "no_loader": (
        ("Le portable n'a pas téléchargé le démarrage", "The laptop did not download the boot"),
        ("La station a répondu, mais le portable n'a pas pris le programme de démarrage.",
         "The station answered, but the laptop did not take the boot program."),
        ("Vérifiez que le câble est branché sur le réseau de l'atelier, puis redémarrez le "
         "portable. Si cela recommence, utilisez la clé USB.",
         "Check the cable is on the workshop's network, then restart the laptop. If it "
         "happens again, use the USB stick.")),
    "ipxe_no_script": (
        ("iPXE ne sait pas utiliser la carte réseau", "iPXE cannot use the network card"),
        ("Le programme de démarrage iPXE a été reçu mais n'a pas pu continuer.",
         "The iPXE boot program was received but could not go on."),
        ("Utilisez la clé USB pour ce portable, et notez son modèle pour un coordinateur.",
         "Use the USB stick for this laptop, and note its model for a coordinator.")),
    "no_station_http": (
        ("Le démarrage n'a pas joint la station", "The boot did not reach the station"),
        ("GRUB ou iPXE a démarré mais n'a pas pu parler à la station.",
         "GRUB or iPXE started but could not talk to the station."),
        ("Redémarrez le portable. Si cela recommence, demandez à un coordinateur de vérifier "
         "le réseau de l'atelier (port HTTP du démarrage réseau), ou utilisez la clé USB.",
         "Restart the laptop. If it happens again, ask a coordinator to check the workshop's "
         "network (the network boot's HTTP port), or use the USB stick.")),
    "kernel_not_fetched": (
        ("Le système de la station n'a pas été chargé", "The station's system was not loaded"),
        ("Le portable devait charger le système de la station et ne l'a pas fait.",
         "The laptop should have loaded the station's system and did not."),
        ("Redémarrez le portable. Si cela recommence, utilisez la clé USB.",
         "Restart the laptop. If it happens again, use the USB stick.")),
    "live_silent": (
        ("Le système de la station ne répond pas", "The station's system does not answer"),
        ("Le portable a démarré le système de la station, mais celui-ci ne s'est pas relié "
         "à la station.", "The laptop started the station's system, but it did not connect "
         "to the station."),
        ("Regardez l'écran du portable : il dit quoi faire.",
         "Look at the laptop's screen: it says what to do.")),
}


def _pair(pair: tuple[str, str] | None) -> dict[str, str] | None:
    return {"fr": pair[0], "en": pair[1]} if pair else None


def row(sighting: BootSighting) -> dict[str, Any]:
    """One laptop's boot, as the panel shows it."""
    problem = PROBLEMS.get(sighting.problem or "")
    return {
        "mac": sighting.mac, "address": sighting.address, "serial": sighting.serial,
        "machine": sighting.machine_id, "firmware": sighting.firmware,
        "stage": _pair(STAGES.get(sighting.stage)), "decision": _pair(
            DECISIONS.get(sighting.decision or "")),
        "at": sighting.updated_at,
        "attempts": sighting.loaders,
        "problem": {"code": sighting.problem, "title": _pair(problem[0]),
                    "meaning": _pair(problem[1]), "todo": _pair(problem[2])}
        if problem else None,
    }


def boots(station: Station) -> list[dict[str, Any]]:
    """The network boots of the last hour, those that stopped first."""
    with station.registry.session(readonly=True) as s:
        return [row(r) for r in netboot.recent(s)]
