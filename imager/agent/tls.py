"""How an agent trusts its station: HTTPS pinned to the station's CA only.

The agent trusts the CA file it is given (`imager keys tls-ca` exports it on
the station; a boot medium carries it) and nothing else: not the system's
store. Plain HTTP is for a station on this machine (loopback), or taken
knowingly with `--insecure-http`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from imager.errors import UsageError
from imager.host.net import is_loopback

GET_CA = ("sur la station / on the station: `imager keys tls-ca station-ca.pem`; un support de "
          "démarrage la contient / a boot medium carries it")


@dataclass(frozen=True)
class StationTrust:
    """The CA file an agent pins and, when the URL's host is not a name of the
    station's certificate (the local agent reaching an installed certificate on
    loopback), the name to check instead."""

    ca: Path
    name: str | None = None

    def context(self) -> ssl.SSLContext:
        """TLS 1.3 to a certificate that chains to `ca`, and names the host."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # hostname and chain checked
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
        try:
            ctx.load_verify_locations(cafile=str(self.ca))
        except OSError as exc:
            raise UsageError(f"impossible de lire la CA de la station / cannot read the "
                             f"station's CA {self.ca}: {exc.strerror} ({GET_CA})") from exc
        except ssl.SSLError as exc:
            raise UsageError(f"{self.ca} n'est pas un certificat PEM / is not a PEM "
                             f"certificate ({exc.reason}): give the file `imager keys tls-ca` "
                             "wrote on the station") from exc
        return ctx


def station_trust(url: str, ca: Path | None, *, insecure_http: bool) -> StationTrust | None:
    """The trust for `url`: its CA for https (required), None for http, which is
    refused unless the station is on this machine or `insecure_http`."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        if ca is None:
            raise UsageError(
                f"la station {url} est en HTTPS : donnez sa CA avec --ca FICHIER / the station "
                f"{url} is HTTPS: give its CA with --ca FILE ({GET_CA}); the agent trusts that "
                "CA only, not the system's")
        return StationTrust(ca)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--station {url!r}: give a URL such as https://station.lan:8470 "
                         "(http:// only for a station on this machine)")
    if ca is not None:
        raise UsageError(f"--ca est pour une station en https:// / --ca is for an https:// "
                         f"station, and {url} is http://: give the station's https:// URL")
    if not insecure_http and not is_loopback(parts.hostname):
        raise UsageError(
            f"la station {url} est en HTTP en clair sur le réseau : les jetons de l'agent et "
            "ses rapports le traverseraient lisibles et modifiables par quiconque y est / "
            f"{url} is plain HTTP over the network: the agent's tokens and its reports would "
            "cross it in clear, for anyone on it to read and change. Give the station's "
            f"https:// URL with --ca ({GET_CA}), or --insecure-http to accept that risk on a "
            "network that is yours alone")
    return None


def verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed behind an HTTP client's error, if one did."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def not_trusted_message(url: str, trust: StationTrust | None,
                        error: ssl.SSLCertVerificationError) -> str:
    """Why the station at `url` is refused, and what to do about it."""
    code, reason = error.verify_code, error.verify_message or error.reason or str(error)
    ca = trust.ca if trust else "?"
    if code in (9, 10):     # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
        fix = ("its certificate is out of its dates: check this machine's clock (`date`); "
               "if it is right, the station must renew its certificate (it issues its own "
               "again at start; an installed one is renewed with `imager keys tls-install`)")
    elif code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        host = urlsplit(url).hostname
        fix = (f"its certificate does not name {host}: use a name or address the station's "
               f"start-up banner lists, or start it with `--tls-name {host}`")
    else:
        fix = (f"its certificate does not chain to the CA this agent pins ({ca}): another "
               f"station, or someone in between. Get this station's CA ({GET_CA}) and give "
               "it with --ca")
    return (f"station {url} refusée : certificat non reconnu / refused: certificate not "
            f"trusted ({reason}): {fix}")
