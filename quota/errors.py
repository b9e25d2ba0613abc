"""The quota engine's errors: one root, :class:`QuotaError`, under :class:`SnfError`.

Each class carries the HTTP status and OpenStack fault name the account API answers with
(the same as Astakos): a commission over a limit is 413 ``overLimit``, a provision on a
holding that does not exist 404 ``itemNotFound``, malformed input 400 ``badRequest``.
``data`` is what Astakos puts beside the message in the fault body (the failing provision,
and for :class:`NoCapacity` the limit and usage), so the API can pass it on unchanged.
"""

from __future__ import annotations

from typing import Any

from snf.common.errors import Conflict, InvalidInput, NotFound, SnfError

#: A provision as the account API and astakosclient spell it.
ProvisionDict = dict[str, Any]


class QuotaError(SnfError):
    """Root of every error the quota engine raises on purpose."""

    @property
    def data(self) -> dict[str, Any]:
        """Details for the API's fault body (Astakos' ``data``); empty by default."""
        return {}


class InvalidData(QuotaError, InvalidInput):
    """Malformed input: an unknown resource, a non-integer or zero quantity, a bad holder."""

    http_status = 400
    openstack_name = "badRequest"


class NoHolding(QuotaError, NotFound):
    """A provision names a holding (holder, source, resource) that does not exist."""

    http_status = 404
    openstack_name = "itemNotFound"

    def __init__(self, provision: ProvisionDict) -> None:
        holder, source, resource = provision["holder"], provision["source"], provision["resource"]
        super().__init__(f"there is no holding of {resource} for {holder} from {source}")
        self.provision = provision

    @property
    def data(self) -> dict[str, Any]:
        return {"provision": self.provision, "name": "NoHoldingError"}


class NoCapacity(QuotaError):
    """A positive provision would take a holding's usage above its limit."""

    http_status = 413
    openstack_name = "overLimit"

    def __init__(self, provision: ProvisionDict, limit: int, usage: int) -> None:
        holder, resource = provision["holder"], provision["resource"]
        super().__init__(
            f"{holder} has not enough capacity of {resource}: limit {limit}, "
            f"usage {usage}, asked for {provision['quantity']}"
        )
        self.provision = provision
        self.resource: str = resource
        self.limit = limit
        self.usage = usage

    @property
    def data(self) -> dict[str, Any]:
        return {
            "provision": self.provision,
            "name": "NoCapacityError",
            "limit": self.limit,
            "usage": self.usage,
        }


class NoQuantity(NoCapacity):
    """A negative provision would release more than the holding's (settled) usage.

    A subclass of :class:`NoCapacity`, so the API answers 413 ``overLimit`` for both, as
    Astakos does; ``data`` names Astakos' ``NoQuantityError`` and the ``available`` amount.
    """

    def __init__(self, provision: ProvisionDict, limit: int, usage: int) -> None:
        super().__init__(provision, limit, usage)
        holder, resource = provision["holder"], provision["resource"]
        self.message = (
            f"{holder} attempts to release more {resource} than it holds: usage {usage}, "
            f"asked for {provision['quantity']}"
        )
        self.args = (self.message,)

    @property
    def data(self) -> dict[str, Any]:
        return {"provision": self.provision, "name": "NoQuantityError", "available": self.usage}


class CommissionNotFound(QuotaError, NotFound):
    """No commission has this serial (for this service)."""

    http_status = 404
    openstack_name = "itemNotFound"

    def __init__(self, serial: int) -> None:
        super().__init__(f"serial {serial} does not exist")
        self.serial = serial


class CommissionConflict(QuotaError, Conflict):
    """The commission was already resolved the other way, or a client key was reused for
    different provisions."""

    http_status = 409
    openstack_name = "conflictingRequest"


class ProjectNotFound(QuotaError, NotFound):
    """No project has this id."""

    http_status = 404
    openstack_name = "itemNotFound"

    def __init__(self, project_id: object) -> None:
        super().__init__(f"project {project_id} does not exist")
        self.project_id = str(project_id)


class ProjectConflict(QuotaError, Conflict):
    """The project does not allow this change (a system project's members, say)."""

    http_status = 409
    openstack_name = "conflictingRequest"
