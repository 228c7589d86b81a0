"""``fiat bench``: each benchmark beside a floor measured in the same run (BENCHMARKS.md).

``log`` (append throughput, integration latency, proofs), ``verify`` (bundles per second),
``authorize`` (decisions per second in process and over HTTP), ``runtime`` (halt latency,
guard CPU), ``mcp`` (a governed MCP tool call's latency beside a direct one and a bare SDK hop).
May import anything of Fiat: it sits at the edge with the CLI.
"""
