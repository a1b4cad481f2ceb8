"""Finding the serving host's exporters when the target is another machine.

A GPU box usually runs node_exporter (port 9100) and dcgm-exporter (port 9400) already; when the target is
not on this machine and no URL was given, their usual ports on the target's host are tried once, briefly,
and the user is told what was found and what was not (without them the server's CPU, disk and GPU
findings are "no data": this machine's counters would describe the client).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

NODE_EXPORTER_PORT = 9100
DCGM_EXPORTER_PORT = 9400
_PROBE_TIMEOUT_S = 1.5
_SIGNATURES = {"node": "node_cpu_seconds_total", "dcgm": "DCGM_FI_"}


@dataclass
class Exporters:
    """The serving host's exporter URLs to scrape, and what the search found, worded for the user."""

    node_exporter_url: str | None = None
    dcgm_url: str | None = None
    notes: list[str] = field(default_factory=list)


async def find_exporters(
    target_url: str, *, node_exporter_url: str | None, dcgm_url: str | None, local: bool
) -> Exporters:
    """Given URLs as they are; for a remote target, the usual ports of what is missing, tried at once."""
    found = Exporters(node_exporter_url, dcgm_url)
    if local or (node_exporter_url and dcgm_url):
        return found
    host = urlsplit(target_url).hostname or ""
    wanted = {
        kind: f"http://{_bracketed(host)}:{port}/metrics"
        for kind, port, given in (
            ("node", NODE_EXPORTER_PORT, node_exporter_url),
            ("dcgm", DCGM_EXPORTER_PORT, dcgm_url),
        )
        if given is None
    }
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(
            *(_answers(http, url, _SIGNATURES[kind]) for kind, url in wanted.items())
        )
    for (kind, url), ok in zip(wanted.items(), answers, strict=True):
        if kind == "node":
            if ok:
                found.node_exporter_url = url
                found.notes.append(
                    f"the serving host {host} is another machine: its node_exporter answers at {url}"
                )
            else:
                found.notes.append(
                    f"the serving host {host} is another machine and no node_exporter answers at {url}: its CPU,"
                    " memory and disk are not read (give --node-exporter URL)"
                )
        elif ok:
            found.dcgm_url = url
            found.notes.append(f"dcgm-exporter answers at {url}: GPU evidence from the serving host")
    return found


async def _answers(http: aiohttp.ClientSession, url: str, signature: str) -> bool:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=_PROBE_TIMEOUT_S)) as response:
            return response.status == 200 and signature in await response.text()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
