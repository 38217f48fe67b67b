"""Redis key names. Every key of a site shares the ``{site}`` hash tag (one cluster slot)."""

from __future__ import annotations


class Keys:
    """``acd:{site}:<entity>:<id>`` names for one site."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.prefix = f"acd:{{{site}}}:"
        # Scripts declare this key so that Redis Cluster routes them to the site's slot.
        self.anchor = self.prefix + "agents"
        self.agents = self.prefix + "agents"
        self.devices = self.prefix + "devices"
        self.available = self.prefix + "available"
        self.waiting = self.prefix + "waiting"
        self.offers = self.prefix + "offers"
        self.wrapup = self.prefix + "wrapup"
        self.relax_due = self.prefix + "relax_due"
        self.overflow_due = self.prefix + "overflow_due"
        self.nudges = self.prefix + "nudges"
        self.resync_due = self.prefix + "resync_due"
        self.open_calls = self.prefix + "open_calls"
        # Callbacks (router/callback.py): open calls to call back, and their next attempt's time.
        self.callbacks = self.prefix + "callbacks"
        self.callback_due = self.prefix + "callback_due"
        self.decisions = self.prefix + "decisions"
        self.timer_lease = self.prefix + "timer_lease"
        self.collector_lease = self.prefix + "collector_lease"
        self.ingest_lease = self.prefix + "ingest_lease"
        # Per partition of AMI events: the highest ingest fencing token seen (router/fencing.py).
        self.fence_marks = self.prefix + "fence_marks"
        self.round_robin = self.prefix + "rr"
        # Supervisors' schedule overrides (router/schedule.py): queue -> JSON.
        self.schedule_overrides = self.prefix + "schedule_override"
        # Records not yet published (docs/records.md), read by the relay's consumer group.
        self.outbox = self.prefix + "outbox"

    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}"

    def call(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    def stats(self, queue: str) -> str:
        return f"{self.prefix}stats:{queue}"

    def waiting_in(self, queue: str) -> str:
        """The line of one queue (waiting calls by score)."""
        return f"{self.prefix}waiting:{queue}"

    def skill_index(self, skill: str, level: int) -> str:
        """Available agents at exactly ``level`` in ``skill`` (by idle time)."""
        return f"{self.prefix}skill:{skill}:{level}"

    def day_stats(self, day: str, queue: str) -> str:
        """A queue's statistics of one day (``YYYY-MM-DD`` in the site's time zone)."""
        return f"{self.prefix}daystats:{day}:{queue}"

    def qa_day(self, day: str) -> str:
        """Quality sampling's counts of one day: ``answered:<agent>``, ``sampled:<agent>``."""
        return f"{self.prefix}qa:{day}"

    def chain(self, envelope_key: str) -> str:
        return f"{self.prefix}chain:{envelope_key}"

    def declined(self, call_id: str) -> str:
        return f"{self.prefix}declined:{call_id}"

    def last_agent(self, caller_number: str) -> str:
        """The agent who last answered this caller: 'agent answered_at' (router/affinity.py)."""
        return f"{self.prefix}last_agent:{caller_number}"

    def held(self, agent_id: str) -> str:
        """Calls waiting for this agent first, by when the wait ends (router/affinity.py)."""
        return f"{self.prefix}held:{agent_id}"
