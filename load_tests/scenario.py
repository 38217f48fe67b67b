"""Scenario files: queues, agents and traffic for the demo and the load tests.

The format is documented in docs/scenarios.md. Queues and agents use exactly the routing
configuration's schema (router.domain), so a scenario's queues can be pasted into a
production configuration file and the other way round.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from router.domain import AgentConfig, Frozen, QueueConfig, Requirements, SkillLevel, SkillName
from router.errors import ConfigError, UnknownQueueError
from router.settings import check_queue_references, describe_validation_error


class Distribution(Frozen):
    """A random duration in simulated seconds."""

    dist: Literal["exponential", "lognormal", "fixed", "uniform"] = "exponential"
    mean: float | None = Field(default=None, gt=0)
    sigma: float = Field(default=0.5, gt=0, description="lognormal: sigma of the underlying normal")
    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _parameters_present(self) -> Self:
        if self.dist == "uniform":
            if self.min is None or self.max is None or self.min >= self.max:
                raise ValueError("uniform needs min < max")
        elif self.mean is None:
            raise ValueError(f"{self.dist} needs mean")
        return self

    def sample(self, rng: random.Random) -> float:
        if self.dist == "uniform":
            assert self.min is not None and self.max is not None
            return rng.uniform(self.min, self.max)
        assert self.mean is not None
        if self.dist == "fixed":
            return self.mean
        if self.dist == "exponential":
            return rng.expovariate(1.0 / self.mean)
        # lognormal with the requested mean: mu = ln(mean) - sigma^2 / 2
        return rng.lognormvariate(math.log(self.mean) - self.sigma**2 / 2, self.sigma)


class Phase(Frozen):
    """A stretch of the run with its own arrival-rate multiplier (ramp-up, steady, ramp-down)."""

    duration_s: float = Field(gt=0)
    rate_factor: float = Field(default=1.0, ge=0)
    name: str | None = Field(default=None, max_length=40)  # e.g. ramp-up; shown in load-test reports


class TrafficLine(Frozen):
    """Calls arriving into one queue as a Poisson process."""

    queue: str
    calls_per_hour: float = Field(gt=0)
    handle_time_s: Distribution = Distribution(dist="exponential", mean=180.0)
    patience_s: Distribution | None = None  # omitted: callers never abandon
    priority: int | None = None  # omitted: the queue's default
    requirements: Requirements | None = None  # omitted: the queue's requirements
    # Affinity (docs/routing.md): a share of callers who called before (their number again),
    # and a share whose ACD_PREFERRED_AGENT names one of the scenario's agents at random.
    returning_share: float = Field(default=0.0, ge=0, le=1)
    preferred_agent_share: float = Field(default=0.0, ge=0, le=1)


class AgentGroup(Frozen):
    """``count`` identical agents named ``<prefix><n>`` (for large load tests)."""

    count: int = Field(ge=1, le=100_000)
    prefix: str = Field(default="agent", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    skills: dict[SkillName, SkillLevel] = Field(default_factory=dict)
    capacity: int = Field(default=1, ge=1)

    def expand(self) -> list[AgentConfig]:
        width = len(str(self.count))
        return [
            AgentConfig(id=f"{self.prefix}{n:0{width}d}", skills=self.skills, capacity=self.capacity)
            for n in range(1, self.count + 1)
        ]


class Breaks(Frozen):
    """Agents step away now and then: a pause with ``reason``, or (``logout_share``) a logout."""

    every_s: Distribution = Distribution(dist="exponential", mean=900.0)
    duration_s: Distribution = Distribution(dist="exponential", mean=120.0)
    reason: str = Field(default="break", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    logout_share: float = Field(default=0.0, ge=0, le=1)


class Transfers(Frozen):
    """A share of answered calls that the agent transfers after the handle time instead of
    hanging up: blind or attended out of the ACD, or blind back into a queue (acd-inbound,
    where the caller is announced and waits again). The weights pick among the three."""

    share: float = Field(default=0.0, ge=0, le=1)
    blind_out: float = Field(default=1.0, ge=0)
    attended_out: float = Field(default=1.0, ge=0)
    back_to_queue: float = Field(default=1.0, ge=0)
    target: str = Field(default="acd-transfer,900", pattern=r"^[A-Za-z0-9_-]+,[A-Za-z0-9*#+_-]+$")
    stay_s: Distribution = Distribution(dist="exponential", mean=60.0)


class AgentBehaviour(Frozen):
    """How the simulated agents handle their phones."""

    answer_delay_s: Distribution = Distribution(dist="uniform", min=1.0, max=4.0)
    answer_probability: float = Field(default=1.0, ge=0, le=1)
    unpause_after_s: float = Field(default=30.0, gt=0, description="back from a ring-no-answer pause")
    breaks: Breaks | None = None  # omitted: agents never step away
    transfers: Transfers = Transfers()  # share 0: nobody transfers


class Scenario(Frozen):
    """Everything one simulated run needs."""

    time_scale: float = Field(default=1.0, gt=0)
    seed: int | None = None
    queues: tuple[QueueConfig, ...] = Field(min_length=1)
    agents: tuple[AgentConfig, ...] = ()
    agent_groups: tuple[AgentGroup, ...] = ()
    agent_behaviour: AgentBehaviour = AgentBehaviour()
    traffic: tuple[TrafficLine, ...] = Field(min_length=1)
    phases: tuple[Phase, ...] = ()
    # Load tests: simulated seconds at the start left out of steady-state figures (the
    # Erlang C check), since a run starts with every agent free. None: a fifth of the run.
    warmup_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _references(self) -> Self:
        check_queue_references(self.queues, None)
        names = [q.name for q in self.queues]
        for i, line in enumerate(self.traffic):
            if line.queue not in names:
                raise UnknownQueueError(
                    f"traffic[{i}].queue = {line.queue!r} is not a queue of this scenario; "
                    f"its queues are {names}. Add the queue under 'queues:' or fix the name."
                )
        ids = [agent.id for agent in self.all_agents()]
        if len(ids) != len(set(ids)):
            raise ValueError("agent ids must be unique (check agents and agent_groups prefixes)")
        if not ids:
            raise ValueError("a scenario needs agents: list them under 'agents:' or 'agent_groups:'")
        return self

    def all_agents(self) -> list[AgentConfig]:
        return [*self.agents, *(agent for group in self.agent_groups for agent in group.expand())]

    def rate_factor_at(self, elapsed_s: float) -> float:
        """Arrival-rate multiplier ``elapsed_s`` simulated seconds into the run."""
        for phase in self.phases:
            if elapsed_s < phase.duration_s:
                return phase.rate_factor
            elapsed_s -= phase.duration_s
        return self.phases[-1].rate_factor if self.phases else 1.0


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path} is not valid YAML: {exc}") from None
    return parse_scenario(data, path)


def parse_scenario(data: object, source: Path | None = None) -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(f"scenario {source}: expected a mapping at the top level")
    try:
        return Scenario(**data)
    except UnknownQueueError:
        raise
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(exc, source).replace("configuration", "scenario", 1)
        ) from None


def default_scenario_path() -> Path:
    return Path(__file__).parent / "scenarios" / "demo.yaml"
