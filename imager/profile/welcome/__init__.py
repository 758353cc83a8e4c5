"""The welcome page of a profile, offline first: "Prendre en main mon matériel".

- content.py: the profile's welcome directory (welcome.yaml, lieux.csv,
  ateliers.ics, pictograms), checked with every problem's `file:line`;
- places.py: digital-mediation places from the national open-data schema;
- calendar.py: the workshops from an iCalendar feed;
- site.py: the static, accessible page (fr, en);
- payload/: what runs on the laptop, stdlib only: the local message service
  and the sender that posts queued messages to the network's portal.

`preview(profile_dir, out, today=...)` renders a profile's page to look at.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path


def preview(profile_dir: Path, out: Path, *, today: date) -> Path:
    """Render the welcome page of the profile in `profile_dir` (its `welcome/`
    directory) into `out`, as the laptop will show it; returns index.html."""
    from imager.profile.welcome import content, site

    loaded = content.load(profile_dir / "welcome")
    written = site.render(loaded, out, today=today, message_url=loaded.messages.local_url)
    return next(p for p in written if p.name == "index.html")
