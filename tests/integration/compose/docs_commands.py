#!/usr/bin/env python3
"""Runs every ```bash runnable block of docs/operations/troubleshooting.md against the running
compose cluster (deploy/compose), as an operator would type them on the Docker host.

The guide's commands name the nodes as the compose network does (node1, gateway1, ...): for the
run, /etc/hosts maps those names to the containers' addresses (restored afterwards, also on
failure). TOKEN is an operator token minted inside node1, and the release binary is first on
PATH, so `chronik-server doctor ...` and `chronik-server debug ...` work as written.

    tests/integration/compose/docs_commands.py [docs/operations/troubleshooting.md]

Exits non-zero naming every block that failed, with its output.
"""

import os
import re
import subprocess
import sys

HOSTS = "/etc/hosts"
MARK = "# chronik-docs-test"
NODES = ["node1", "node2", "node3", "node4", "node5", "node6", "gateway1", "gateway2"]


def container_ip(name):
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", f"chronik-{name}"],
        capture_output=True, text=True)
    ips = out.stdout.split()
    return ips[0] if out.returncode == 0 and ips else None


def map_hosts():
    with open(HOSTS) as f:
        original = f.read()
    lines = [l for l in original.splitlines() if MARK not in l]
    for name in NODES:
        ip = container_ip(name)
        if ip:
            lines.append(f"{ip} {name} {MARK}")
    with open(HOSTS, "w") as f:
        f.write("\n".join(lines) + "\n")
    return original


def mint_token():
    out = subprocess.run(
        ["docker", "exec", "chronik-node1", "/usr/local/bin/chronik-server", "admin", "token", "--role", "operator",
         "--config", "/etc/chronik/chronik.toml"],
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"docs: cannot mint a token in chronik-node1: {out.stderr.strip()}")
    return out.stdout.strip()


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else "docs/operations/troubleshooting.md"
    with open(doc) as f:
        text = f.read()
    blocks = re.findall(r"^```bash runnable\n(.*?)^```", text, re.S | re.M)
    if not blocks:
        sys.exit(f"docs: no ```bash runnable blocks in {doc}")
    env = dict(os.environ)
    env["TOKEN"] = mint_token()
    # tests/integration/compose/ -> the repository root
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    env["PATH"] = os.path.join(repo, "target", "release") + os.pathsep + env.get("PATH", "")
    original = map_hosts()
    failed = []
    try:
        for i, block in enumerate(blocks, 1):
            first = next((l for l in block.splitlines() if l.strip() and not l.startswith("#")), "")
            try:
                run = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, capture_output=True,
                                     text=True, timeout=120)
                ok = run.returncode == 0
                output = (run.stdout + run.stderr)[-2000:]
            except subprocess.TimeoutExpired:
                ok, output = False, "timed out after 120 s"
            print(f"docs: block {i}/{len(blocks)} {'ok  ' if ok else 'FAIL'} {first[:90]}")
            if not ok:
                failed.append((i, block, output))
    finally:
        with open(HOSTS, "w") as f:
            f.write(original)
    for i, block, output in failed:
        print(f"--- block {i} failed:\n{block}\n--- output:\n{output}")
    print(f"docs: {len(blocks) - len(failed)} of {len(blocks)} runnable blocks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
