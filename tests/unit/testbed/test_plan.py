import ipaddress

import pytest

from tests.testbed import plan


def test_addresses_and_names_are_unique_and_inside_test_net_1() -> None:
    seen_addr = {plan.SVC_ADDRESS}
    seen_names = {plan.SVC_NAME}
    for c in range(1, plan.MAX_CLUSTERS + 1):
        cluster = plan.ClusterPlan(c, plan.MAX_NODES)
        for addr, name in [(cluster.address, cluster.name)] + [
            (n.address, n.name) for n in cluster.nodes
        ]:
            assert ipaddress.IPv4Address(addr) in plan.SUBNET
            assert addr not in seen_addr and name not in seen_names
            seen_addr.add(addr)
            seen_names.add(name)
        assert len({n.netns for n in cluster.nodes}) == plan.MAX_NODES
        # Linux interface names are at most 15 characters.
        assert all(len(n.short) <= 15 and len(n.netns) <= 64 for n in cluster.nodes)


def test_hosts_file_puts_the_fqdn_first() -> None:
    hosts = plan.ClusterPlan(2, 2).hosts_file()
    assert "192.0.2.21\tn1.c2.snf.test n1\n" in hosts
    assert "192.0.2.22\tn2.c2.snf.test n2\n" in hosts
    assert "192.0.2.102\tc2.snf.test c2\n" in hosts
    assert f"{plan.SVC_ADDRESS}\t{plan.SVC_NAME} svc\n" in hosts


@pytest.mark.parametrize("index,nodes", [(0, 1), (9, 1), (1, 0), (1, 10)])
def test_out_of_range_clusters_are_refused(index: int, nodes: int) -> None:
    with pytest.raises(ValueError):
        plan.ClusterPlan(index, nodes)
