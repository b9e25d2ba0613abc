"""What the quota engine does, on any database.  Subclass with a ``db`` fixture (a ``Db``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from snf.quota import engine as q
from snf.quota import resources
from snf.quota.resources import MAX_QUANTITY, GiB

from .dbs import Db, pair

VM = "cyclades.vm"


def vm_quota(db: Db, user: uuid.UUID, project: uuid.UUID | None = None) -> dict[str, int]:
    with db.tx() as s:
        return q.quotas(s, user)[str(project or user)][VM]


def new_user(db: Db, **base: int) -> uuid.UUID:
    user = uuid.uuid4()
    with db.tx() as s:
        assert q.ensure_user(s, str(user), base=base or None) == user
    return user


def new_project(db: Db, vm: tuple[int, int] = (3, 2), *members: uuid.UUID) -> uuid.UUID:
    with db.tx() as s:
        project = q.create_project(
            s,
            name=f"p-{uuid.uuid4()}",
            owner=members[0] if members else None,
            grants={VM: {"project_capacity": vm[0], "member_capacity": vm[1]}},
        )
        for member in members:
            q.add_member(s, project, member)
    return project


class EngineContract:
    # --- users and their base quota -------------------------------------------------------

    def test_a_new_user_gets_the_base_quota_of_their_system_project(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            quotas = q.quotas(s, user)
        assert list(quotas) == [str(user)]
        assert set(quotas[str(user)]) == set(resources.api_visible_names())
        assert quotas[str(user)][VM] == {
            "limit": 2, "usage": 0, "pending": 0,
            "project_limit": 2, "project_usage": 0, "project_pending": 0,
        }  # fmt: skip
        assert quotas[str(user)]["cyclades.ram"]["limit"] == 4 * GiB
        assert quotas[str(user)]["pithos.diskspace"]["limit"] == 5 * GiB
        assert "cyclades.total_ram" not in quotas[str(user)]  # not API-visible
        with db.tx() as s:
            everything = q.quotas(s, user, visible_only=False)[str(user)]
        assert everything["cyclades.total_ram"]["limit"] == 4 * GiB
        assert set(everything) == set(resources.RESOURCES)

    def test_ensure_user_is_idempotent_and_takes_base_overrides(self, db: Db) -> None:
        user = new_user(db, **{VM: 7})
        with db.tx() as s:
            assert q.ensure_user(s, user, base={VM: 1}) == user  # exists: unchanged
        assert vm_quota(db, user)["limit"] == 7
        with db.tx() as s:
            q.set_grants(s, user, {VM: {"project_capacity": 9, "member_capacity": 9}})
        assert vm_quota(db, user)["limit"] == vm_quota(db, user)["project_limit"] == 9

    def test_unknown_users_have_no_quotas(self, db: Db) -> None:
        with db.tx() as s:
            assert q.quotas(s, uuid.uuid4()) == {}
            assert q.project_quotas(s, uuid.uuid4()) == {}

    # --- the two phases -------------------------------------------------------------------

    def test_issue_then_accept(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            serial = q.issue_commission(s, pair(user, user, VM, 1), name="create vm1")
            assert q.pending_commissions(s) == [serial]
        assert vm_quota(db, user) == {
            "limit": 2, "usage": 1, "pending": 1,
            "project_limit": 2, "project_usage": 1, "project_pending": 1,
        }  # fmt: skip
        with db.tx() as s:
            q.accept(s, serial)
            assert q.pending_commissions(s) == []
        assert vm_quota(db, user) == {
            "limit": 2, "usage": 1, "pending": 0,
            "project_limit": 2, "project_usage": 1, "project_pending": 0,
        }  # fmt: skip

    def test_issue_then_reject_undoes_it(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            serial = q.issue_commission(s, pair(user, user, VM, 2))
            q.reject(s, serial)
        assert vm_quota(db, user)["usage"] == vm_quota(db, user)["pending"] == 0
        with db.tx() as s:
            assert q.commission_info(s, serial)["state"] == "rejected"

    def test_a_release_lowers_usage_min_first_and_usage_max_on_accept(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            q.issue_commission(s, pair(user, user, VM, 2), auto_accept=True)
            serial = q.issue_commission(s, pair(user, user, VM, -1))
        assert vm_quota(db, user)["usage"] == 2  # usage is usage_max, as in Astakos
        assert vm_quota(db, user)["pending"] == 1
        with db.tx() as s:
            q.accept(s, serial)
        assert vm_quota(db, user)["usage"] == 1
        assert vm_quota(db, user)["pending"] == 0

    def test_auto_accept_settles_at_once(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            serial = q.issue_commission(s, pair(user, user, VM, 2), auto_accept=True)
            assert q.pending_commissions(s) == []
            assert q.commission_info(s, serial)["state"] == "accepted"
        assert vm_quota(db, user)["usage"] == 2
        assert vm_quota(db, user)["pending"] == 0

    def test_commission_info(self, db: Db) -> None:
        user = new_user(db)
        upper = [dict(p) for p in pair(user, user, VM, 1)]
        upper[0]["holder"] = upper[0]["holder"].upper().replace("USER:", "user:")
        with db.tx() as s:
            serial = q.issue_commission(s, upper, name="vm1")
            info = q.commission_info(s, serial)
        assert info["serial"] == serial and info["name"] == "vm1"
        assert info["state"] == "pending"
        assert info["issue_time"].endswith("+00:00")
        assert (
            sorted(info["provisions"], key=lambda p: p["holder"]) == pair(user, user, VM, 1)[::-1]
        )

    # --- refusals -------------------------------------------------------------------------

    def test_over_the_limit_is_no_capacity_and_changes_nothing(self, db: Db) -> None:
        user = new_user(db)
        project = new_project(db, (3, 2), user)
        with db.tx() as s:
            q.issue_commission(s, pair(user, project, VM, 1), auto_accept=True)
        with db.tx() as s, pytest.raises(q.NoCapacity) as refused:
            # the project's holding (locked first) has room for 2, the member's has not
            q.issue_commission(s, pair(user, project, VM, 2))
        err = refused.value
        assert (err.http_status, err.openstack_name) == (413, "overLimit")
        assert err.resource == VM and (err.limit, err.usage) == (2, 1)
        assert err.provision == pair(user, project, VM, 2)[0]
        assert err.data["name"] == "NoCapacityError"
        assert VM in str(err)
        assert vm_quota(db, user, project) == {
            "limit": 2, "usage": 1, "pending": 0,
            "project_limit": 3, "project_usage": 1, "project_pending": 0,
        }  # fmt: skip

    def test_force_passes_the_limit_but_never_below_zero(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            q.issue_commission(s, pair(user, user, VM, 5), force=True, auto_accept=True)
        assert vm_quota(db, user)["usage"] == 5
        with db.tx() as s, pytest.raises(q.NoCapacity):
            q.issue_commission(s, pair(user, user, VM, 1))  # over the limit: refused
        with db.tx() as s, pytest.raises(q.NoQuantity) as refused:
            q.issue_commission(s, pair(user, user, VM, -6), force=True)
        assert refused.value.http_status == 413
        assert refused.value.data == {
            "provision": pair(user, user, VM, -6)[1],
            "name": "NoQuantityError",
            "available": 5,
        }
        with db.tx() as s:
            q.issue_commission(s, pair(user, user, VM, -4), auto_accept=True)  # releases work
        assert vm_quota(db, user)["usage"] == 1

    def test_a_pending_release_cannot_be_released_twice(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            q.issue_commission(s, pair(user, user, VM, 1), auto_accept=True)
            q.issue_commission(s, pair(user, user, VM, -1))
        with db.tx() as s, pytest.raises(q.NoQuantity):
            q.issue_commission(s, pair(user, user, VM, -1))

    def test_a_missing_holding_is_no_holding(self, db: Db) -> None:
        user, stranger = new_user(db), uuid.uuid4()
        with db.tx() as s:
            for provisions in (pair(stranger, stranger, VM, 1), pair(user, uuid.uuid4(), VM, 1)):
                with pytest.raises(q.NoHolding) as missing:
                    q.issue_commission(s, provisions)
                assert missing.value.http_status == 404
                assert missing.value.data["provision"] in provisions
        assert vm_quota(db, user)["usage"] == 0

    @pytest.mark.parametrize(
        "change",
        [
            {"resource": "cyclades.unknown"},
            {"resource": None},
            {"quantity": 0},
            {"quantity": 1.0},
            {"quantity": "1"},
            {"quantity": True},
            {"quantity": None},
            {"quantity": MAX_QUANTITY + 1},
            {"holder": "user:not-a-uuid"},
            {"holder": "admin:6f1e0d3c-94a4-4b79-8a5b-0c8dc0e4c0a1"},
            {"holder": None},
            {"source": None},  # a user holding always has a project source
            {"source": "user:6f1e0d3c-94a4-4b79-8a5b-0c8dc0e4c0a1"},
        ],
        ids=repr,
    )
    def test_malformed_provisions_are_invalid_data(self, db: Db, change: dict[str, Any]) -> None:
        user = new_user(db)
        provisions = pair(user, user, VM, 1)
        provisions[0] = {**provisions[0], **change}
        with db.tx() as s, pytest.raises(q.InvalidData) as bad:
            q.issue_commission(s, provisions)
        assert (bad.value.http_status, bad.value.openstack_name) == (400, "badRequest")
        assert vm_quota(db, user)["usage"] == 0

    def test_malformed_commissions_are_invalid_data(self, db: Db) -> None:
        user = new_user(db)
        good = pair(user, user, VM, 1)
        project_with_source = [{**good[1], "source": f"project:{user}"}]
        without_quantity = [{k: v for k, v in good[0].items() if k != "quantity"}]
        with db.tx() as s:
            for provisions in ([], None, "x", {"a": 1}, [1], without_quantity,
                               project_with_source, good + good[:1]):  # fmt: skip
                with pytest.raises(q.InvalidData):
                    q.issue_commission(s, provisions)  # type: ignore[arg-type]
            for kwargs in ({"name": "x" * 256}, {"name": None}, {"client_key": ""},
                           {"force": 1}, {"auto_accept": "yes"}, {"service": 3}):  # fmt: skip
                with pytest.raises(q.InvalidData):
                    q.issue_commission(s, good, **kwargs)
            for serial in ("1", 1.0, None, True):
                with pytest.raises(q.InvalidData):
                    q.accept(s, serial)  # type: ignore[arg-type]
            with pytest.raises(q.InvalidData):
                q.resolve(s, accept="1")  # type: ignore[arg-type]
            with pytest.raises(q.InvalidData):
                q.resolve(s, reject=["1"])  # type: ignore[list-item]
            with pytest.raises(q.InvalidData):
                q.quotas(s, "not-a-uuid")
        assert vm_quota(db, user)["usage"] == 0

    def test_a_failed_call_leaves_the_callers_other_work(self, db: Db) -> None:
        user, other = new_user(db), uuid.uuid4()
        with db.tx() as s:
            q.ensure_user(s, other)
            with pytest.raises(q.NoCapacity):
                q.issue_commission(s, pair(user, user, VM, 3))
            q.issue_commission(s, pair(other, other, VM, 1), auto_accept=True)
        assert vm_quota(db, other)["usage"] == 1
        assert vm_quota(db, user)["usage"] == 0

    # --- idempotency ------------------------------------------------------------------------

    def test_a_client_key_charges_once(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            serial = q.issue_commission(s, pair(user, user, VM, 1), client_key="req-1")
        with db.tx() as s:
            assert q.issue_commission(s, pair(user, user, VM, 1), client_key="req-1") == serial
        assert vm_quota(db, user)["usage"] == 1
        with db.tx() as s:
            q.accept(s, serial)
        with db.tx() as s:  # also once the first was accepted, even asking for auto_accept
            again = q.issue_commission(
                s, pair(user, user, VM, 1), client_key="req-1", auto_accept=True
            )
            assert again == serial
            assert q.pending_commissions(s) == []
        assert vm_quota(db, user)["usage"] == 1

    def test_a_client_key_is_per_service_and_bound_to_its_provisions(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            a = q.issue_commission(s, pair(user, user, VM, 1), client_key="k", service="cyclades")
            b = q.issue_commission(s, pair(user, user, VM, 1), client_key="k", service="pithos")
            assert a != b
            with pytest.raises(q.CommissionConflict) as conflict:
                q.issue_commission(s, pair(user, user, VM, -1), client_key="k", service="pithos")
            assert conflict.value.http_status == 409
            assert q.pending_commissions(s, service="cyclades") == [a]
            assert q.pending_commissions(s) == [a, b]

    def test_a_refused_commission_leaves_its_key_free(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s, pytest.raises(q.NoCapacity):
            q.issue_commission(s, pair(user, user, VM, 3), client_key="k")
        with db.tx() as s:
            q.issue_commission(s, pair(user, user, VM, 1), client_key="k", auto_accept=True)
        assert vm_quota(db, user)["usage"] == 1

    # --- resolving --------------------------------------------------------------------------

    def test_accept_and_reject_are_idempotent_but_not_interchangeable(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            one = q.issue_commission(s, pair(user, user, VM, 1))
            two = q.issue_commission(s, pair(user, user, VM, 1))
            q.accept(s, one)
            q.accept(s, one)
            q.reject(s, two)
            q.reject(s, two)
            with pytest.raises(q.CommissionConflict):
                q.reject(s, one)
            with pytest.raises(q.CommissionConflict):
                q.accept(s, two)
            with pytest.raises(q.CommissionNotFound) as missing:
                q.accept(s, two + 1000)
            assert missing.value.http_status == 404
            with pytest.raises(q.CommissionNotFound):
                q.commission_info(s, two + 1000)
        assert vm_quota(db, user)["usage"] == 1
        assert vm_quota(db, user)["pending"] == 0

    def test_commissions_are_per_service(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            serial = q.issue_commission(s, pair(user, user, VM, 1), service="cyclades")
            with pytest.raises(q.CommissionNotFound):
                q.accept(s, serial, service="pithos")
            with pytest.raises(q.CommissionNotFound):
                q.commission_info(s, serial, service="pithos")
            assert q.pending_commissions(s, service="pithos") == []
            q.accept(s, serial, service="cyclades")

    def test_resolve_in_bulk(self, db: Db) -> None:
        user = new_user(db, **{VM: 10})
        with db.tx() as s:
            a, b, c, d, e = (q.issue_commission(s, pair(user, user, VM, 1)) for _ in range(5))
            q.reject(s, e)
            result = q.resolve(s, accept=[a, b, c, 9999, e, a], reject=[c, d])
        assert result["accepted"] == [a, b]
        assert result["rejected"] == [d]
        failed = dict(result["failed"])
        assert set(failed) == {c, 9999, e}
        assert isinstance(failed[9999], q.CommissionNotFound)
        assert isinstance(failed[e], q.CommissionConflict)
        assert isinstance(failed[c], q.InvalidData)  # accept and reject at once
        with db.tx() as s:
            assert q.pending_commissions(s) == [c]
        assert vm_quota(db, user)["usage"] == 3  # a, b settled, c pending
        assert vm_quota(db, user)["pending"] == 1

    # --- projects and members ---------------------------------------------------------------

    def test_a_member_draws_on_the_project_grant(self, db: Db) -> None:
        alice, bob = new_user(db), new_user(db)
        project = new_project(db, (3, 2), alice, bob)
        with db.tx() as s:
            quotas = q.quotas(s, alice)
            assert list(quotas) == [str(alice), str(project)]
            assert quotas[str(project)][VM] == {
                "limit": 2, "usage": 0, "pending": 0,
                "project_limit": 3, "project_usage": 0, "project_pending": 0,
            }  # fmt: skip
            assert set(quotas[str(project)]) == set(resources.api_visible_names())
            assert quotas[str(project)]["cyclades.cpu"]["limit"] == 0  # not granted
            q.issue_commission(s, pair(alice, project, VM, 2), auto_accept=True)
            with pytest.raises(q.NoCapacity) as refused:  # bob: 2 of his own, 1 of the project
                q.issue_commission(s, pair(bob, project, VM, 2))
            assert refused.value.provision["holder"] == f"project:{project}"
            q.issue_commission(s, pair(bob, project, VM, 1), auto_accept=True)
            assert q.project_quotas(s, project)[str(project)][VM] == {
                "project_limit": 3,
                "project_usage": 3,
                "project_pending": 0,
            }
        assert vm_quota(db, alice)["usage"] == 0  # the base quota is a separate project

    def test_removing_a_member_withdraws_the_grant_but_keeps_the_usage(self, db: Db) -> None:
        alice = new_user(db)
        project = new_project(db, (3, 2), alice)
        with db.tx() as s:
            q.issue_commission(s, pair(alice, project, VM, 2), auto_accept=True)
            q.remove_member(s, project, alice)
            q.remove_member(s, project, alice)  # idempotent
            assert list(q.quotas(s, alice)) == [str(alice)]
            with pytest.raises(q.NoCapacity):
                q.issue_commission(s, pair(alice, project, VM, 1))
            q.issue_commission(s, pair(alice, project, VM, -1), auto_accept=True)  # release
            q.add_member(s, project, alice)
            assert q.quotas(s, alice)[str(project)][VM] == {
                "limit": 2, "usage": 1, "pending": 0,
                "project_limit": 3, "project_usage": 1, "project_pending": 0,
            }  # fmt: skip

    def test_grants_and_project_state_set_the_limits(self, db: Db) -> None:
        alice = new_user(db)
        project = new_project(db, (3, 2), alice)
        with db.tx() as s:
            q.set_grants(s, project, {VM: {"project_capacity": 10, "member_capacity": 4}})
        assert vm_quota(db, alice, project)["limit"] == 4
        assert vm_quota(db, alice, project)["project_limit"] == 10
        with db.tx() as s:
            q.set_project_state(s, project, "suspended")
        assert vm_quota(db, alice, project)["limit"] == 0
        with db.tx() as s:
            q.set_project_state(s, project, "active")
        assert vm_quota(db, alice, project)["limit"] == 4

    def test_project_rules(self, db: Db) -> None:
        alice, bob = new_user(db), new_user(db)
        project = new_project(db, (3, 2), alice)
        with db.tx() as s:
            for bad in (
                {VM: {"project_capacity": 1, "member_capacity": 2}},
                {VM: {"project_capacity": -1, "member_capacity": 0}},
                {VM: {"project_capacity": 1}},
                {"cyclades.unknown": {"project_capacity": 1, "member_capacity": 1}},
                {VM: 3},
            ):
                with pytest.raises(q.InvalidData):
                    q.set_grants(s, project, bad)  # type: ignore[arg-type]
            with pytest.raises(q.ProjectConflict):
                q.add_member(s, alice, bob)  # a system project has one member
            with pytest.raises(q.ProjectConflict):
                q.remove_member(s, alice, alice)
            with pytest.raises(q.ProjectConflict):
                q.remove_member(s, project, bob)  # not a member
            with pytest.raises(q.ProjectConflict):
                q.set_project_state(s, alice, "suspended")
            with pytest.raises(q.ProjectNotFound):
                q.add_member(s, uuid.uuid4(), bob)
            with pytest.raises(q.InvalidData):
                q.remove_member(s, project, alice, state="accepted")
            with pytest.raises(q.InvalidData):
                q.create_project(s, name="system:x")
        with db.tx() as s:
            name = f"dup-{uuid.uuid4()}"
            q.create_project(s, name=name)
            with pytest.raises(q.ProjectConflict):
                q.create_project(s, name=name)
            assert q.add_member(s, project, bob) == q.add_member(s, project, bob)
        assert vm_quota(db, bob, project)["limit"] == 2

    def test_a_lowered_limit_refuses_new_usage_but_allows_releases(self, db: Db) -> None:
        user = new_user(db)
        with db.tx() as s:
            q.issue_commission(s, pair(user, user, VM, 2), auto_accept=True)
            q.set_grants(s, user, {VM: {"project_capacity": 1, "member_capacity": 1}})
            with pytest.raises(q.NoCapacity):
                q.issue_commission(s, pair(user, user, VM, 1))
            q.issue_commission(s, pair(user, user, VM, -1), auto_accept=True)
        assert vm_quota(db, user)["usage"] == 1
