"""The ``fiat`` command line: one module per command group, no domain logic.

* ``main`` assembles the typer app and is the ``fiat`` entry point (``python -m fiat.cli.main``);
* ``common`` holds what every command shares: consoles, exit codes, options, the mapping of
  Fiat's exception types onto exit codes, ``--json`` output (camelCase keys, like the wire
  formats), the home's log opened and closed in one place;
* ``home`` (version, init), ``log``, ``keys`` (keys, trust-root), ``policy``, ``serve``,
  ``authorize`` (authorize, revoke, enroll), ``approvals`` (approve, deny, approvals),
  ``run`` (measure, run), ``verify`` (bundle, verify), ``bench``, ``demo``.

A command parses its arguments, calls the package that does the work, and prints the
result; workflows (key rotation, binding a server, publishing the configured policy)
live in their own packages (``fiat.keys``, ``fiat.serving``, …). May import any Fiat
package; nothing imports the CLI.
"""
