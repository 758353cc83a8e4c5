"""Words printed on certificates, French first, English on request.

`text(key, lang)` gives a label; `word(category, code, lang)` turns a record's
code into words (an unknown code prints as-is, a missing value prints
"non renseigné" / "not recorded"). The formatters print numbers, sizes, dates
and durations the way a French (or English) reader expects: comma decimals,
narrow no-break spaces, Europe/Paris local time next to UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
LANGS = ("fr", "en")
KINDS = ("erasure", "non-erasure", "destruction")
NNBSP = "\u202f"  # French thousands separator and space before % and units
NBSP = "\u00a0"

TEXT: dict[str, tuple[str, str]] = {
    # titles and banners
    "title.erasure": ("Certificat d'effacement de données", "Certificate of data erasure"),
    "title.non-erasure": ("Constat de non-effacement", "Record of failed erasure"),
    "title.destruction": ("Procès-verbal de destruction", "Record of physical destruction"),
    "title.donation": ("Bilan du traitement des supports d'un don",
                       "Media sanitization summary of a donation"),
    "banner.non-erasure": ("NON EFFACÉ — À DÉTRUIRE", "NOT ERASED — TO BE DESTROYED"),
    "certificate": ("N° de document", "Document no."),
    "issued_at": ("Émis le", "Issued on"),
    # sections
    "s.donor": ("Donateur et don", "Donor and donation"),
    "s.media": ("Support", "Drive"),
    "s.machine": ("Machine", "Computer"),
    "s.method": ("Méthode", "Method"),
    "s.verification": ("Vérification", "Verification"),
    "s.hidden": ("Zones cachées (HPA/DCO)", "Hidden areas (HPA/DCO)"),
    "s.timing": ("Dates et durées", "Dates and durations"),
    "s.outcome": ("Résultat et destination", "Outcome and destination"),
    "s.errors": ("Erreurs d'accès au support", "Drive access errors"),
    "s.evidence": ("Ce qui fonde ce résultat", "What this result rests on"),
    "s.advice": ("Réserves et conseils", "Caveats and advice"),
    "s.issuer": ("Émetteur", "Issuer"),
    "s.check": ("Émetteur et vérification", "Issuer and verification"),
    "s.totals": ("Résultats", "Results"),
    "s.meaning": ("Ce que signifient ces documents", "What these documents mean"),
    "s.drives": ("Liste des supports", "List of drives"),
    # donor and donation
    "donor": ("Donateur", "Donor"), "donor_kind": ("Type", "Type"), "siret": ("SIRET", "SIRET"),
    "donation": ("Référence du don", "Donation reference"),
    "received_on": ("Reçu le", "Received on"), "intake_site": ("Lieu de collecte", "Collected at"),
    # media
    "manufacturer": ("Fabricant", "Manufacturer"), "model": ("Modèle", "Model"),
    "serial": ("N° de série", "Serial number"), "wwn": ("WWN", "WWN"),
    "capacity": ("Capacité", "Capacity"), "media_type": ("Type", "Type"),
    "medium": ("Catégorie", "Category"), "transport": ("Interface", "Interface"),
    "identity": ("Identifiant station", "Station identifier"),
    "property_number": ("N° d'inventaire", "Asset number"),
    "confidentiality": ("Confidentialité avant / après", "Confidentiality before / after"),
    "vendor": ("Marque", "Make"), "asset_tag": ("N° d'inventaire", "Asset tag"),
    # method
    "class": ("Catégorie", "Category"),
    "class_source": ("NIST SP 800-88 Rev. 2", "NIST SP 800-88 Rev. 2"),
    "planned_class": ("Catégorie visée", "Intended category"),
    "technique": ("Technique", "Technique"), "method": ("Méthode", "Method"),
    "standard": ("Norme", "Standard"), "tool": ("Outil et version", "Tool and version"),
    "passes": ("Passes", "Passes"), "canary": ("Marqueurs témoins", "Canary markers"),
    "canary_value": ("{planted} posés, {survivors} retrouvés après effacement",
                     "{planted} planted, {survivors} found after erasure"),
    "policy": ("Politique d'effacement", "Erasure policy"),
    "refused": ("Méthodes écartées", "Methods not used"),
    "witness": ("Témoin", "Witness"),
    # verification
    "v.mode": ("Mode", "Mode"), "v.coverage": ("Couverture", "Coverage"),
    "v.pattern": ("Contenu attendu", "Expected content"), "v.seed": ("Graine", "Seed"),
    "v.read": ("Octets relus", "Bytes read"), "v.subsections": ("Zones", "Sections"),
    "v.result": ("Résultat", "Result"), "v.validation": ("Validation", "Validation"),
    "v.ok": ("Conforme : aucun secteur différent du contenu attendu",
             "Passed: no sector differs from the expected content"),
    "v.bad": ("NON conforme : {n} secteur(s) différent(s), le premier à l'octet {offset}",
              "FAILED: {n} sector(s) differ, the first at byte {offset}"),
    "v.visual": ("Destruction constatée visuellement", "Destruction visually confirmed"),
    "v.none": ("Aucune vérification", "No verification"),
    # hidden areas
    "h.before": ("Avant", "Before"), "h.after": ("Après", "After"),
    "h.actions": ("Actions", "Actions"),
    "h.value": ("visible {visible}, natif {native}, DCO {dco} secteurs",
                "visible {visible}, native {native}, DCO {dco} sectors"),
    "h.none": ("Aucune action", "No action"),
    "h.status": ("État", "Status"),
    "h.not-checked": ("Non vérifiées (hdparm -N sans réponse)",
                      "Not checked (no answer to hdparm -N)"),
    "h.not-applicable": ("Sans objet : ce n'est pas un disque ATA",
                         "Not applicable: not an ATA drive"),
    "h.accepted_by": ("Accepté par", "Accepted by"),
    "h.accepted_value": ("{by}, le {at}", "{by}, on {at}"),
    # what the result rests on (imager.certify.evidence)
    "ev.proven": ("Prouvé par la station", "Proven by the station"),
    "ev.reported": ("Déclaré par le disque", "Reported by the drive"),
    "ev.overwrite": ("{n} passe(s) écrite(s) par la station sur tout l'espace adressable "
                     "({size}).",
                     "{n} pass(es) written by the station over the whole addressable space "
                     "({size})."),
    "ev.command": ("Commande «\u00a0{command}\u00a0» envoyée par la station, qui a attendu "
                   "sa fin.",
                   "Command “{command}” sent by the station, which waited for it to end."),
    "ev.canaries": ("{planted} marqueurs témoins écrits avant l'effacement, {survivors} "
                    "retrouvé(s) après.",
                    "{planted} canary markers written before the erasure, {survivors} found "
                    "after it."),
    "ev.zero-fill": ("Zéros écrits ensuite sur tout l'espace adressable ({size}), le disque "
                     "laissant un contenu non défini.",
                     "Zeros then written over the whole addressable space ({size}), as the "
                     "drive leaves its content undefined."),
    "ev.read-back": ("{mode} ({coverage} du support) : contenu relu conforme, {pattern}.",
                     "{mode} ({coverage} of the drive): the content read back is {pattern}, "
                     "as expected."),
    "ev.sanitize-log": ("Journal NVMe Sanitize Status : cette sanitisation s'est terminée "
                        "sans erreur.",
                        "NVMe Sanitize Status log: this sanitize completed without error."),
    "ev.sanitize-status": ("État SANITIZE du disque ATA : opération terminée sans erreur.",
                           "The ATA drive's SANITIZE status: completed without error."),
    "ev.sense-data": ("Données de sens SCSI : aucun échec de la sanitisation.",
                      "SCSI sense data: no sanitize failure."),
    "ev.command-status": ("Réponse du disque : commande terminée sans erreur.",
                          "The drive's answer: command completed without error."),
    "ev.whole-media": ("Effacement de tout le support, y compris les zones que la station ne "
                       "peut pas lire (surprovisionnement, blocs de réserve et réalloués).",
                       "The whole medium erased, including the areas the station cannot read "
                       "(over-provisioning, spare and remapped blocks)."),
    "ev.user-area": ("Effacement des données elles-mêmes, pas seulement de leurs adresses ; "
                     "rien n'est affirmé pour les blocs de réserve (Clear).",
                     "The data itself erased, not only its addresses; nothing is claimed for "
                     "spare blocks (Clear)."),
    "ev.key-replaced": ("Clé de chiffrement interne remplacée : ce qui a été écrit avec "
                        "l'ancienne clé est illisible.",
                        "Internal encryption key replaced: what was written with the old key "
                        "is unreadable."),
    # timing
    "period": ("Début et fin", "Start and end"),
    "destroyed_at": ("Détruit le", "Destroyed on"),
    "duration": ("Durée", "Duration"), "written": ("Octets écrits", "Bytes written"),
    "throughput": ("Débit moyen", "Average throughput"), "job": ("Tâche", "Job"),
    # outcome
    "result": ("Résultat", "Outcome"), "reason": ("Motif", "Reason"),
    "next_step": ("Suite à donner", "Next step"), "destination": ("Destination", "Destination"),
    "errors_more": ("… et {n} autre(s) erreur(s) (liste complète dans le JSON joint)",
                    "… and {n} more error(s) (full list in the attached JSON)"),
    "error_row": ("octet {offset}, {length} octets : {error}",
                  "byte {offset}, {length} bytes: {error}"),
    "more": ("… et {n} de plus", "… and {n} more"),
    # people and issuer
    "performed_by": ("Réalisé par", "Performed by"),
    "habilitation": ("Habilitation", "Qualification"),
    "agent": ("Agent", "Agent"), "agent_key": ("clé", "key"),
    "boot.station": ("dock de la station", "the station's own dock"),
    "boot.network": ("démarré par le réseau de la station (jeton à usage unique)",
                     "booted from the station's network (single-use token)"),
    "boot.usb": ("démarré sur clé USB (déclaré)", "booted from a USB stick (declared)"),
    "boot.installed": ("système installé (déclaré)", "installed system (declared)"),
    "boot.None": ("démarrage non précisé", "boot not stated"),
    "secure_boot.True": ("Secure Boot actif (déclaré)", "Secure Boot on (declared)"),
    "secure_boot.False": ("Secure Boot inactif (déclaré)", "Secure Boot off (declared)"),
    "habilitation_date": ("depuis le", "since"),
    "validated_by": ("Validé par", "Validated by"),
    "organisation": ("Organisation", "Organisation"), "station": ("Station", "Station"),
    "key": ("Clé de signature", "Signing key"),
    "ledger": ("Registre", "Ledger"),
    "ledger_value": ("entrée n° {seq}, après {prev}", "entry no. {seq}, after {prev}"),
    # verification box
    "sha256": ("SHA-256 du document signé", "SHA-256 of the signed document"),
    "verify_url": ("Vérifier en ligne", "Verify online"),
    "attached": ("Joint à ce PDF : {names}. Le document JSON signé fait foi.",
                 "Attached to this PDF: {names}. The signed JSON document is authoritative."),
    "offline": ("Vérifier hors ligne / verify offline", "Vérifier hors ligne / verify offline"),
    # donation
    "drives": ("Supports reçus", "Drives received"),
    "erased": ("Effacés et vérifiés", "Erased and verified"),
    "erased_clear": ("dont Clear", "of which Clear"),
    "erased_purge": ("dont Purge", "of which Purge"),
    "not_erased": ("Non effacés (à détruire)", "Not erased (to be destroyed)"),
    "destroyed": ("Détruits physiquement", "Physically destroyed"),
    "meaning.erasure": (
        "le support a été effacé selon une méthode NIST SP 800-88 Rev. 2, puis relu pour "
        "vérifier qu'il ne contient plus les données ; il peut être réemployé.",
        "the drive was erased with a NIST SP 800-88 Rev. 2 method, then read back to check "
        "that the data is gone; it can be reused."),
    "meaning.destruction": (
        "le support a été détruit physiquement devant un témoin ; ses données ne peuvent "
        "plus être lues.",
        "the drive was physically destroyed before a witness; its data can no longer be read."),
    "meaning.non-erasure": (
        "l'effacement a échoué ; ce document n'atteste aucun effacement. Le support est mis "
        "de côté puis détruit, ce qui donne lieu à un procès-verbal de destruction.",
        "the erasure failed; this document does not certify any erasure. The drive is set "
        "aside then destroyed, and a record of destruction is issued."),
    "meaning.verify": (
        "Chaque document est signé électroniquement par la station. Leurs numéros et "
        "empreintes SHA-256 sont dans le tableau CSV joint ; le QR code et la commande "
        "ci-dessous permettent de vérifier ce bilan sans nous faire confiance.",
        "Each document is electronically signed by the station. Their numbers and SHA-256 "
        "hashes are in the attached CSV table; the QR code and the command below let anyone "
        "verify this summary without trusting us."),
    "csv_sha256": ("SHA-256 du tableau CSV joint", "SHA-256 of the attached CSV table"),
    "col.n": ("N°", "No."), "col.certificate": ("Document", "Document"),
    "col.model": ("Modèle", "Model"), "col.serial": ("N° de série", "Serial"),
    "col.capacity": ("Capacité", "Capacity"), "col.class": ("Catégorie", "Category"),
    "col.technique": ("Technique", "Technique"), "col.verification": ("Vérification",
                                                                      "Verification"),
    "col.result": ("Résultat", "Outcome"), "col.destination": ("Destination", "Destination"),
    "col.kind": ("Type de document", "Document type"), "col.sha256": ("SHA-256", "SHA-256"),
    "col.manufacturer": ("Fabricant", "Manufacturer"),
    "col.capacity_bytes": ("Capacité (octets)", "Capacity (bytes)"),
    "col.media_type": ("Type de support", "Media type"), "col.method": ("Méthode", "Method"),
    "col.date": ("Date", "Date"),
    "na": ("non renseigné", "not recorded"),
}

# Plain-language sentences; {placeholders} are filled by render.py.
SENTENCE: dict[str, tuple[str, str]] = {
    "erasure": (
        "Le support ci-dessous a été effacé le {date} selon la méthode {cls} "
        "(NIST SP 800-88 Rev. 2) par {technique}, puis vérifié par {verification}. {meaning}",
        "The drive below was erased on {date} with the {cls} method (NIST SP 800-88 Rev. 2) by "
        "{technique}, then verified by {verification}. {meaning}"),
    "non-erasure": (
        "L'effacement du support ci-dessous a échoué le {date} : ses données n'ont PAS été "
        "effacées. Ce document n'atteste aucun effacement. Le support doit être détruit "
        "physiquement, puis un procès-verbal de destruction sera établi.",
        "Erasing the drive below failed on {date}: its data was NOT erased. This document does "
        "not certify any erasure. The drive must be physically destroyed, then a record of "
        "destruction will be issued."),
    "destruction": (
        "Le support ci-dessous a été détruit physiquement le {date} par {technique}, en "
        "présence de {witness}, selon la méthode Destroy (NIST SP 800-88 Rev. 2). {meaning}",
        "The drive below was physically destroyed on {date} by {technique}, witnessed by "
        "{witness}, with the Destroy method (NIST SP 800-88 Rev. 2). {meaning}"),
    "donation": (
        "{donor} a confié {n} support(s) de stockage à {issuer}. Chaque support a reçu un "
        "document signé : certificat d'effacement, procès-verbal de destruction ou, s'il n'a "
        "pas pu être effacé, constat de non-effacement (le support est alors détruit).",
        "{donor} entrusted {n} storage drive(s) to {issuer}. Each drive received a signed "
        "document: certificate of erasure, record of destruction or, when it could not be "
        "erased, record of failed erasure (the drive is then destroyed)."),
}

WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "donor_kind": {
        "person": ("Particulier", "Private individual"),
        "town_hall": ("Mairie", "Town hall"),
        "company": ("Entreprise", "Company"),
        "association": ("Association", "Non-profit association"),
    },
    "media_type": {
        "magnetic": ("Disque dur magnétique", "Magnetic hard disk"),
        "flash": ("Mémoire flash (SSD, clé USB, eMMC)", "Flash memory (SSD, USB stick, eMMC)"),
        "hybrid": ("Disque hybride (SSHD)", "Hybrid drive (SSHD)"),
        "virtual": ("Support virtuel (essai)", "Virtual drive (test)"),
        "unknown": ("Type inconnu", "Unknown type"),
    },
    "medium": {
        "nvme": ("SSD NVMe", "NVMe SSD"), "sata-ssd": ("SSD SATA", "SATA SSD"),
        "sata-hdd": ("Disque dur SATA", "SATA hard disk"), "sas-ssd": ("SSD SAS", "SAS SSD"),
        "sas-hdd": ("Disque dur SAS", "SAS hard disk"),
        "usb-flash": ("Clé USB", "USB flash drive"), "usb-disk": ("Disque USB", "USB disk"),
        "emmc": ("Mémoire eMMC", "eMMC memory"), "sd-card": ("Carte SD", "SD card"),
        "virtual": ("Virtuel", "Virtual"), "unknown": ("Inconnu", "Unknown"),
    },
    "class": {
        "clear": ("Clear", "Clear"), "purge": ("Purge", "Purge"), "destroy": ("Destroy", "Destroy"),
    },
    "class_meaning": {
        "clear": ("Clear : les données ne peuvent plus être retrouvées avec des logiciels ou "
                  "des outils courants.",
                  "Clear: the data can no longer be recovered with software or common tools."),
        "purge": ("Purge : les données ne peuvent plus être retrouvées, même avec des "
                  "techniques de laboratoire.",
                  "Purge: the data can no longer be recovered, even with laboratory "
                  "techniques."),
        "destroy": ("Destroy : le support est détruit, les données ne peuvent plus être "
                    "retrouvées et le support ne peut plus servir.",
                    "Destroy: the drive is destroyed; the data cannot be recovered and the "
                    "drive cannot be used again."),
    },
    "technique": {
        "overwrite": ("réécriture de tout le support", "overwriting the whole drive"),
        "block-erase": ("effacement des blocs par le micrologiciel du support",
                        "block erase by the drive's firmware"),
        "crypto-erase": ("effacement cryptographique (clé de chiffrement interne remplacée)",
                         "cryptographic erase (internal encryption key replaced)"),
        "user-data-erase": ("effacement des données par le micrologiciel (NVMe Format)",
                            "user data erase by the firmware (NVMe Format)"),
        "security-erase": ("commande ATA Security Erase", "ATA Security Erase command"),
        "security-erase-enhanced": ("commande ATA Security Erase (mode amélioré)",
                                    "ATA Security Erase command (enhanced mode)"),
        "secure-erase": ("effacement sécurisé eMMC", "eMMC secure erase"),
        "shred": ("broyage", "shredding"), "disintegrate": ("désintégration", "disintegration"),
        "pulverize": ("pulvérisation", "pulverization"), "melt": ("fusion", "melting"),
        "incinerate": ("incinération", "incineration"),
        "crush": ("écrasement à la presse", "crushing"), "drill": ("perçage", "drilling"),
        "degauss-and-destroy": ("démagnétisation puis destruction",
                                "degaussing then destruction"),
    },
    "method": {
        "nist-clear": ("NIST SP 800-88 Rev. 2 Clear : une passe de zéros",
                       "NIST SP 800-88 Rev. 2 Clear: one pass of zeros"),
        "random": ("Une passe aléatoire (AES-256-CTR)", "One random pass (AES-256-CTR)"),
        "random-zero": ("Une passe aléatoire puis une passe de zéros",
                        "One random pass then one pass of zeros"),
        "dod-3pass": ("DoD 5220.22-M, 3 passes (0x00, 0xFF, aléatoire)",
                      "DoD 5220.22-M, 3 passes (0x00, 0xFF, random)"),
        "nvme-sanitize-crypto": ("NVMe Sanitize, Crypto Erase", "NVMe Sanitize, Crypto Erase"),
        "nvme-sanitize-block": ("NVMe Sanitize, Block Erase", "NVMe Sanitize, Block Erase"),
        "nvme-sanitize-overwrite": ("NVMe Sanitize, Overwrite", "NVMe Sanitize, Overwrite"),
        "nvme-format-crypto": ("NVMe Format (effacement cryptographique)",
                               "NVMe Format (cryptographic erase)"),
        "nvme-format-user-data": ("NVMe Format (effacement des données)",
                                  "NVMe Format (user data erase)"),
        "ata-sanitize-crypto": ("ATA SANITIZE CRYPTO SCRAMBLE", "ATA SANITIZE CRYPTO SCRAMBLE"),
        "ata-sanitize-block": ("ATA SANITIZE BLOCK ERASE", "ATA SANITIZE BLOCK ERASE"),
        "ata-sanitize-overwrite": ("ATA SANITIZE OVERWRITE", "ATA SANITIZE OVERWRITE"),
        "ata-security-erase": ("ATA SECURITY ERASE UNIT", "ATA SECURITY ERASE UNIT"),
        "ata-security-erase-enhanced": ("ATA SECURITY ERASE UNIT (amélioré)",
                                        "ATA SECURITY ERASE UNIT (enhanced)"),
        "scsi-sanitize-crypto": ("SCSI SANITIZE CRYPTOGRAPHIC ERASE",
                                 "SCSI SANITIZE CRYPTOGRAPHIC ERASE"),
        "scsi-sanitize-block": ("SCSI SANITIZE BLOCK ERASE", "SCSI SANITIZE BLOCK ERASE"),
        "scsi-sanitize-overwrite": ("SCSI SANITIZE OVERWRITE", "SCSI SANITIZE OVERWRITE"),
        "mmc-sanitize": ("eMMC SANITIZE", "eMMC SANITIZE"),
        "mmc-secure-erase": ("eMMC secure erase", "eMMC secure erase"),
    },
    "validation": {
        "read-back-full": ("relecture complète du support", "full read-back of the drive"),
        "read-back-sample": ("relecture par échantillonnage", "sampled read-back"),
        "read-back-full+canaries": ("relecture complète et contrôle des marqueurs témoins",
                                    "full read-back and canary check"),
        "read-back-sample+canaries": ("relecture par échantillonnage et contrôle des "
                                      "marqueurs témoins", "sampled read-back and canary check"),
        "witnessed": ("destruction constatée par un témoin", "destruction witnessed"),
        "none": ("aucune vérification", "no verification"),
    },
    "verification": {
        "full": ("relecture totale", "full read-back"),
        "sample": ("relecture par échantillonnage", "sampled read-back"),
        "none": ("aucune", "none"),
        "visual": ("constat visuel", "visual inspection"),
    },
    "pattern": {
        "zero": ("zéros (0x00)", "zeros (0x00)"), "ones": ("uns (0xFF)", "ones (0xFF)"),
        "random": ("aléatoire (reproductible)", "random (reproducible)"),
        "zero (after firmware)": ("zéros écrits ensuite", "zeros written after"),
    },
    "result": {
        "erased": ("Effacé et vérifié", "Erased and verified"),
        "failed": ("NON effacé — à détruire", "NOT erased — to be destroyed"),
        "destroyed": ("Détruit", "Destroyed"),
    },
    "kind": {
        "erasure": ("Certificat d'effacement", "Certificate of erasure"),
        "non-erasure": ("Constat de non-effacement", "Record of failed erasure"),
        "destruction": ("Procès-verbal de destruction", "Record of destruction"),
        "donation": ("Certificat de don", "Donation certificate"),
        "withdrawal": ("Retrait d'un document", "Withdrawal of a document"),
    },
    "destination": {
        "reuse": ("Réemploi (remis à un bénéficiaire)", "Reuse (given to a beneficiary)"),
        "parts": ("Pièces détachées", "Spare parts"),
        "recycling": ("Recyclage (filière DEEE)", "Recycling (WEEE)"),
        "destruction": ("Destruction physique", "Physical destruction"),
    },
    "technique_short": {
        "overwrite": ("Réécriture", "Overwrite"), "block-erase": ("Block erase", "Block erase"),
        "crypto-erase": ("Effacement crypto.", "Crypto erase"),
        "user-data-erase": ("NVMe Format", "NVMe Format"),
        "security-erase": ("ATA Security Erase", "ATA Security Erase"),
        "security-erase-enhanced": ("ATA Security Erase+", "ATA Security Erase+"),
        "secure-erase": ("eMMC secure erase", "eMMC secure erase"),
        "shred": ("Broyage", "Shredding"), "disintegrate": ("Désintégration", "Disintegration"),
        "pulverize": ("Pulvérisation", "Pulverization"), "melt": ("Fusion", "Melting"),
        "incinerate": ("Incinération", "Incineration"), "crush": ("Écrasement", "Crushing"),
        "drill": ("Perçage", "Drilling"),
        "degauss-and-destroy": ("Démagnétisation + destruction", "Degauss + destroy"),
    },
    "destination_short": {
        "reuse": ("Réemploi", "Reuse"), "parts": ("Pièces", "Parts"),
        "recycling": ("Recyclage", "Recycling"), "destruction": ("Destruction", "Destruction"),
    },
}


DESTRUCTION = ("shred", "disintegrate", "pulverize", "melt", "incinerate", "crush", "drill",
               "degauss-and-destroy")
WORDS["method"].update({
    f"destruction-{code}": (f"Destruction physique : {WORDS['technique'][code][0]}",
                            f"Physical destruction: {WORDS['technique'][code][1]}")
    for code in DESTRUCTION})


def french_spaces(text: str) -> str:
    """No line break before a French colon or semicolon."""
    return text.replace(" :", NBSP + ":").replace(" ;", NBSP + ";")


def _french_spaces(table: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {k: (french_spaces(fr), en) for k, (fr, en) in table.items()}


TEXT = _french_spaces(TEXT)
SENTENCE = _french_spaces(SENTENCE)
WORDS = {category: _french_spaces(table) for category, table in WORDS.items()}

MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
UNITS = {"fr": (("o", "ko", "Mo", "Go", "To", "Po"), ("o", "Kio", "Mio", "Gio", "Tio", "Pio")),
         "en": (("B", "kB", "MB", "GB", "TB", "PB"), ("B", "KiB", "MiB", "GiB", "TiB", "PiB"))}


def lang_of(value: Any) -> str:
    """The record's language, French unless English was asked for."""
    return value if value in LANGS else "fr"


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "en" else pair[0]


def text(key: str, lang: str) -> str:
    """A label; an unknown key prints as itself."""
    pair = TEXT.get(key)
    return pick(pair, lang) if pair else key


def label(key: str, lang: str) -> str:
    """A label followed by a colon, French style ('Motif :') or English ('Reason:')."""
    return text(key, lang) + (NBSP + ":" if lang == "fr" else ":")


def missing(value: Any) -> bool:
    return value is None or value == "" or value == []


def word(category: str, code: Any, lang: str) -> str:
    """A code in words; unknown codes print as-is, missing ones as "non renseigné"."""
    if missing(code):
        return text("na", lang)
    pair = WORDS.get(category, {}).get(str(code))
    return pick(pair, lang) if pair else str(code)


def pattern(code: Any, lang: str) -> str:
    """A pass or verification pattern: zero, ones, random or pattern:HEX."""
    if isinstance(code, str) and code.startswith("pattern:"):
        return ("motif 0x" if lang == "fr" else "pattern 0x") + code[8:]
    return word("pattern", code, lang)


# -- numbers -------------------------------------------------------------------

def number(value: Any, lang: str, decimals: int = 0) -> str:
    """1234567.8 -> '1 234 567,8' (fr, narrow no-break spaces) or '1,234,567.8' (en)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return text("na", lang) if missing(value) else str(value)
    out = f"{value:,.{decimals}f}"
    if lang == "en":
        return out
    return out.replace(",", NNBSP).replace(".", ",")


def _scaled(value: int, base: int, units: tuple[str, ...], lang: str) -> str:
    n, i = float(value), 0
    while n >= base and i < len(units) - 1:
        n, i = n / base, i + 1
    digits = 0 if i == 0 or n >= 100 else 1
    shown = number(n, lang, digits)
    if digits and shown[-2:] in (",0", ".0"):
        shown = shown[:-2]
    return f"{shown}{NBSP}{units[i]}"


def size(value: Any, lang: str) -> str:
    """A short size in decimal units: 500 Go / 500 GB."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return text("na", lang) if missing(value) else str(value)
    return _scaled(value, 1000, UNITS[lang_of(lang)][0], lang)


def capacity(value: Any, lang: str) -> str:
    """A drive size: '500,1 Go (465,8 Gio) — 500 107 862 016 octets'."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return size(value, lang)
    decimal = _scaled(value, 1000, UNITS[lang_of(lang)][0], lang)
    binary = _scaled(value, 1024, UNITS[lang_of(lang)][1], lang)
    unit = "octets" if lang == "fr" else "bytes"
    return f"{decimal} ({binary}) — {number(value, lang)}{NBSP}{unit}"


def percent(value: Any, lang: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return text("na", lang) if missing(value) else str(value)
    pct = value * 100
    digits = 0 if pct == int(pct) else (2 if pct < 10 else 1)
    return f"{number(pct, lang, digits)}{NNBSP if lang == 'fr' else ''}%"


def duration(value: Any, lang: str) -> str:
    """Seconds in words: '0,1 s', '2 min 05 s', '3 h 12 min'."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return text("na", lang) if missing(value) else str(value)
    if value < 0.1:
        return f"<{NBSP}{number(0.1, lang, 1)}{NBSP}s"
    if value < 60:
        return f"{number(value, lang, 0 if value >= 10 else 1)}{NBSP}s"
    total = int(round(value))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}{NBSP}h {m:02d}{NBSP}min"
    return f"{m}{NBSP}min {s:02d}{NBSP}s"


def throughput(value: Any, lang: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return text("na", lang)
    return size(int(value), lang) + "/s"


# -- dates -----------------------------------------------------------------------

def parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def day(value: Any, lang: str) -> str:
    """'2026-11-23' (or a datetime) -> '23 novembre 2026' / '23 November 2026'."""
    if isinstance(value, datetime):
        when: date = value.astimezone(PARIS).date()
    elif isinstance(value, str) and len(value) == 10:
        try:
            when = date.fromisoformat(value)
        except ValueError:
            return value
    elif (instant := parse_datetime(value)) is not None:
        when = instant.astimezone(PARIS).date()
    else:
        return text("na", lang) if missing(value) else str(value)
    first = "1er" if when.day == 1 and lang == "fr" else str(when.day)
    return f"{first} {MONTHS[lang_of(lang)][when.month - 1]} {when.year}"


def moment(value: Any, lang: str) -> str:
    """An instant in Paris time and UTC: '23 novembre 2026 à 18:15:36 (heure de Paris,
    17:15:36 UTC)'."""
    when = parse_datetime(value)
    if when is None:
        return text("na", lang) if missing(value) else str(value)
    local, utc = when.astimezone(PARIS), when.astimezone(UTC)
    if lang == "en":
        return f"{day(when, lang)}, {local:%H:%M:%S} Paris time ({utc:%H:%M:%S} UTC)"
    return f"{day(when, lang)} à {local:%H:%M:%S} (heure de Paris, {utc:%H:%M:%S} UTC)"


def period(start: Any, end: Any, lang: str) -> str:
    """Start and end of an operation; one date when both fall on the same Paris day:
    '23 novembre 2026, de 18:15:16 à 18:17:02 (heure de Paris ; UTC 17:15:16 – 17:17:02)'."""
    first, last = parse_datetime(start), parse_datetime(end)
    if first is None and last is None:
        return text("na", lang)
    if first is None or last is None or day(first, lang) != day(last, lang):
        return f"{moment(start, lang)} → {moment(end, lang)}"
    a, b = first.astimezone(PARIS), last.astimezone(PARIS)
    ua, ub = first.astimezone(UTC), last.astimezone(UTC)
    if lang == "en":
        return (f"{day(first, lang)}, {a:%H:%M:%S} to {b:%H:%M:%S} Paris time "
                f"(UTC {ua:%H:%M:%S} – {ub:%H:%M:%S})")
    return (f"{day(first, lang)}, de {a:%H:%M:%S} à {b:%H:%M:%S} (heure de Paris{NBSP}; "
            f"UTC {ua:%H:%M:%S} – {ub:%H:%M:%S})")
