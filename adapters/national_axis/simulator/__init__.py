"""A simulator of the national document axis (VDXP), for tests and demos.

It stands in for the real axis towards anything built on VNPT's SDK (SDKVXP 2.0.1),
docbroker's own national-axis client included: it takes requests in the SDK's exact
form (`broker.vdxp`: the operations at `/<operation>` with the SDK's HTTP method,
parameters in `XroadVnpt-*` headers signed with a system's shared secret, no
timestamp window and no nonce since the SDK has neither, sendEdoc's raw body
checked against its `hash-file`) and answers in the shapes the SDK's readers take.
Each configured system serves the `local = true` agencies of a docbroker directory
file and those it registers (registerAgency); what is sent to them waits for that
system to take it (getReceivedEdocList, getEdoc or downloadEdoc, updateStatus
done|fail). `/_sim/…` lets a test inject faults and read counters.

It is not the real axis: one process, one SQLite file or memory, secrets in plain
text in its configuration, no validation of the packages it carries (it reads
them leniently for the sent list's title and statuses), error codes of its own
beside ExistDoc (README: what is not known about the real one), and `/_sim/` is
unauthenticated, so it must listen on 127.0.0.1 only.

The parts: `config` (its TOML file), `store` (SQLite), `state` (who serves what),
`operations` (the protocol), `handlers` (HTTP, authentication, faults), `app`
(the application and the command).
"""

from adapters.national_axis.simulator.app import build_simulator_app, main, serve_simulator
from adapters.national_axis.simulator.config import (
    SimulatorConfig,
    SimulatorConfigError,
    SystemConfig,
    load_simulator_config,
)

__all__ = [
    "SimulatorConfig",
    "SimulatorConfigError",
    "SystemConfig",
    "build_simulator_app",
    "load_simulator_config",
    "main",
    "serve_simulator",
]
