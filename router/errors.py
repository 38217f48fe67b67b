"""One error root for the project; every error says what is wrong and how to fix it."""

from __future__ import annotations


class AcdError(Exception):
    """Root of every error this project raises on purpose.

    ``retriable`` tells a supervisor whether trying again later can succeed (a broker
    that is restarting) or not (wrong credentials, a bad configuration file).
    """

    retriable: bool = False


class ConfigError(AcdError):
    """The configuration is invalid; the message names the key, the value and what was expected."""


class UnknownQueueError(ConfigError):
    """A call or a reference names a queue that the configuration does not define."""


class AmiError(AcdError):
    """A problem talking to Asterisk over AMI."""


class AmiAuthenticationError(AmiError):
    """Asterisk refused the AMI username/secret."""


class AmiConnectionError(AmiError):
    """The AMI TCP connection could not be made or was lost."""

    retriable = True


class AmiActionError(AmiError):
    """Asterisk answered an AMI action with ``Response: Error``."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"AMI action {action} failed: {message}")
        self.action = action
        self.ami_message = message


SHUTTING_DOWN_MESSAGE = "Asterisk is shutting down"


class AmiShuttingDownError(AmiActionError):
    """Asterisk refused an action because it is shutting down or restarting.

    Not a verdict on the action (a Redirect refused so did not touch the caller): the PBX is
    going away, and the same action can succeed once it is back.
    """

    retriable = True


class BrokerUnavailableError(AcdError):
    """The Kafka bootstrap servers cannot be reached."""

    retriable = True


class BrokerRefusedError(ConfigError):
    """Kafka refused this client: credentials, ACLs or client settings need fixing."""


class RedisUnavailableError(AcdError):
    """The Redis server cannot be reached."""

    retriable = True


class MalformedEventError(AcdError):
    """A message on a topic is not a valid envelope; it goes to the dead-letter topic."""


class DatabaseUnavailableError(AcdError):
    """PostgreSQL cannot be reached, or cannot take work right now (restarting, overloaded)."""

    retriable = True


class DatabaseRefusedError(ConfigError):
    """PostgreSQL refused this client or lacks what it needs: credentials, database, schema, grants."""


class RecordRejectedError(AcdError):
    """PostgreSQL rejected a record's values (a data or constraint error): that record, not the link."""
