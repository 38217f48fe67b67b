"""AMI simulator: a protocol-faithful stand-in for Asterisk's Manager Interface.

Tests, the demo and load tests drive it instead of a real Asterisk: ``Pbx`` models the
phone system of deploy/asterisk/extensions.conf, ``AmiSimulator`` serves it over TCP as
Asterisk 18-22 would, and ``Ledger`` records the ground truth referees compare the
router's view with. See docs/ami-simulator.md.
"""

from load_tests.amisim.calls import SimCall, TransferPlan
from load_tests.amisim.ledger import (
    AgentRecord,
    CallRecord,
    DoubleAssignment,
    Ledger,
    OfferRecord,
    TransferRecord,
    UnavailableOffer,
    UnexpectedRedirect,
)
from load_tests.amisim.pbx import Pbx
from load_tests.amisim.phones import SimAgent
from load_tests.amisim.server import AmiSimulator, AmiUser, SessionInfo
from load_tests.amisim.wire import Event

__all__ = [
    "AgentRecord",
    "AmiSimulator",
    "AmiUser",
    "CallRecord",
    "DoubleAssignment",
    "Event",
    "Ledger",
    "OfferRecord",
    "Pbx",
    "SessionInfo",
    "SimAgent",
    "SimCall",
    "TransferPlan",
    "TransferRecord",
    "UnavailableOffer",
    "UnexpectedRedirect",
]
