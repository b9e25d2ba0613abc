"""Command line for the testbed: ``python -m tests.testbed {up,down,status,exec} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import threading
import time

from snf.common.cli import run_main

from . import cluster, install, nfdhcpd_node, plan, test_providers
from . import portal as portal_mod
from .forward import Forwarder


def demo(port: int, portal_port: int = 8080) -> int:
    """Bring up cluster 1 (archipelago and the test providers installed) and the portal
    with a demo user, then forward the portal and RAPI to the host's loopback until
    interrupted."""
    c = cluster.up(plan.ClusterPlan(1))
    for node in c.plan.nodes:
        test_providers.install(node)
        install.install_snf(node)
    dhcp = nfdhcpd_node.start(c)
    public = f"http://127.0.0.1:{portal_port}"
    portal = portal_mod.start(base_url=public)
    password = secrets.token_urlsafe(12)
    portal.snf_portal("user", "add", "demo@example.test", "--name", "Demo User", "--active",
                      "--password-stdin", input=password + "\n")  # fmt: skip
    token = portal.snf_portal("token", "issue", "demo@example.test").strip()
    servers = [
        Forwarder(portal_port, cluster.lan(), (plan.SVC_ADDRESS, portal_mod.PORT)),
        Forwarder(port, cluster.lan(), (c.info.address, c.info.rapi_port)),
    ]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(
        f"\nThe cloud is up: Ganeti cluster {c.info.name} (master {c.info.master}) and the "
        f"portal.\n"
        f"Portal: {public}/ui/  user demo@example.test  password {password}  API token {token}\n"
        f"  New signups: their verification mail lands in {portal.outbox}; approve them with "
        f"SNF_CONFIG_DIR={portal.config_dir} .venv/bin/snf-portal user activate EMAIL\n"
        f"  openstack --os-auth-url {public}/identity/v3 --os-username demo@example.test "
        f"--os-password '{password}' --os-user-domain-name Default --os-project-name "
        f"demo@example.test --os-project-domain-name Default token issue\n"
        f"  curl -s -H 'X-Auth-Token: {token}' {public}/account/v1.0/quotas\n"
        f"Ganeti RAPI: https://127.0.0.1:{port}/2/info  user {c.info.rapi_user}  "
        f"password {c.info.rapi_password}\n"
        f"On the master: .venv/bin/python -m tests.testbed exec -- gnt-instance add -t ext "
        f"--disk 0:size=64,provider=archipelago -o {test_providers.OS_NAME} "
        f"-n {c.info.master} --no-name-check --no-ip-check vm1\n"
        f"VM networks: nfdhcpd runs on the master (log {c.plan.master.state_dir}/nfdhcpd.log); "
        f"gnt-network add --network=10.66.0.0/24 --gateway=10.66.0.1 --tags=nfdhcpd net1, "
        f"then gnt-network connect --nic-parameters=mode=bridged,link=br0 net1 default\n"
        f"Stop with Ctrl-C; remove everything with `make testbed-down`.",
        flush=True,
    )
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.server_close()
        nfdhcpd_node.stop(c, dhcp)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring up a fresh cluster (clearing leftovers first)")
    p_up.add_argument("-c", "--cluster", type=int, default=1, help="cluster index (1-8)")
    p_down = sub.add_parser("down", help="remove a cluster, or everything")
    p_down.add_argument("-c", "--cluster", type=int, help="only this cluster")
    sub.add_parser("status", help="list running clusters")
    p_demo = sub.add_parser("demo", help="bring up cluster 1 and forward its RAPI to loopback")
    p_demo.add_argument("--port", type=int, default=15080, help="host loopback port")
    p_exec = sub.add_parser("exec", help="run a command inside a node")
    p_exec.add_argument("-c", "--cluster", type=int, default=1)
    p_exec.add_argument("-n", "--node", type=int, default=1)
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="testbed: %(message)s")

    if args.command == "up":
        t0 = time.monotonic()
        c = cluster.up(plan.ClusterPlan(args.cluster))
        print(f"{c.info.name} is up in {time.monotonic() - t0:.1f} s: master {c.info.master}, "
              f"RAPI https://{c.info.address}:{c.info.rapi_port} (from the services host "
              f"{plan.SVC_ADDRESS}), user {c.info.rapi_user}, "
              f"password in {plan.STATE_DIR}/c{args.cluster}/cluster.json")  # fmt: skip
    elif args.command == "down":
        cluster.down(args.cluster)
    elif args.command == "status":
        for path in sorted(plan.STATE_DIR.glob("c*/cluster.json")):
            info = json.loads(path.read_text())
            print(f"{info['name']}\t{info['address']}\tnodes: {' '.join(info['nodes'])}")
    elif args.command == "demo":
        return demo(args.port)
    elif args.command == "exec":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("exec needs a command after --")
        node = cluster.load(args.cluster).nodes[args.node - 1]
        proc = node.run(command, check=False, timeout=3600)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    return 0


if __name__ == "__main__":
    run_main(main, prog="testbed")
