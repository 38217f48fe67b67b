"""AMI simulator: a protocol-faithful stand-in for Asterisk's Manager Interface.

Tests, the demo and load tests drive it instead of a real Asterisk: ``pbx.Pbx`` models the
phone system of deploy/asterisk/extensions.conf, ``server.AmiSimulator`` serves it over TCP
as Asterisk 18-22 would, and ``ledger.Ledger`` records the ground truth referees compare the
router's view with. See docs/ami-simulator.md.

Import from the modules themselves: this package imports nothing, so that loading one
piece of the simulator does not load all of it, and no module imports back through here.
"""
