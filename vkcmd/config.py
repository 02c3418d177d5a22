"""Settings: read from the environment, overridden by flags, validated at start.

One table (:data:`SETTINGS`) declares every setting once: its environment
variable, its flag, its default, the parser that validates it, and its help.
A bad value raises :class:`ConfigError`, whose one line names the setting, the
value and what is accepted; ``__main__`` prints it and exits 2. Nothing here
talks to the cluster or starts anything.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ConfigError(ValueError):
    """A setting has a value vkcmd cannot run with."""

    def __init__(self, setting: str, value: Any, accepted: str) -> None:
        super().__init__(f"invalid setting {setting}={value!r}: {accepted}")
        self.setting = setting
        self.value = value
        self.accepted = accepted


# --- parsers: raw string -> value, or ValueError(what is accepted) -------------

def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError(f"expected {accepted}") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"expected {accepted}")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number of seconds >= 0") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a number of seconds >= 0")
    return value


def _positive_seconds(raw: str) -> float:
    value = _seconds(raw)
    if value <= 0:
        raise ValueError("expected a number of seconds > 0")
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        for option in options:
            if raw.strip().lower() == option.lower():
                return option
        raise ValueError("expected one of " + ", ".join(options))

    return parse


def _node_name(raw: str) -> str:
    if len(raw) > 253 or not _DNS1123_SUBDOMAIN.match(raw):
        raise ValueError("expected a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)")
    return raw


def _label_value(raw: str) -> str:
    if len(raw) > 63 or not _LABEL_VALUE.match(raw):
        raise ValueError("expected a label value: at most 63 characters, alphanumeric at both ends, '-', '_' or '.' inside")
    return raw


def _ip_address(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError("expected an IPv4 or IPv6 address") from None


def _readable_file(raw: str) -> str:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError("expected the path of an existing file")
    if not os.access(path, os.R_OK):
        raise ValueError("expected a file vkcmd can read")
    return str(path)


def _kubeconfig(raw: str) -> str:
    path = _readable_file(raw)
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise ValueError("expected a readable kubeconfig (YAML)") from None
    if not isinstance(document, dict) or not document.get("clusters"):
        raise ValueError("expected a kubeconfig with at least one cluster")
    return path


def _kubeconfig_path(raw: str) -> str:
    """A kubeconfig that may not exist yet (a bootstrap writes it); checked in :func:`_complete`."""
    if not raw.strip():
        raise ValueError("expected the path of a kubeconfig")
    path = Path(raw).expanduser()
    return _kubeconfig(str(path)) if path.exists() else str(path.absolute())


def _directory(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a directory path")
    path = Path(os.path.expandvars(raw)).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError("expected a directory (the path exists and is not one)")
    return str(path.absolute())


_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([KMGTPE]i)|([numkMGTPE])|[eE]([+-]?[0-9]+))?")
_DECIMAL_SI = {"n": -3, "u": -2, "m": -1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def parse_quantity(quantity: str | int | Decimal) -> Decimal:
    """A Kubernetes quantity (``500m``, ``8Gi``, ``1e3``, ``1.5``) as a Decimal; ValueError when it is not one.

    The grammar of apimachinery's ``resource.Quantity``: a signed decimal, then
    a binary suffix (Ki..Ei), a decimal one (n u m k M G T P E) or an exponent.
    """
    if isinstance(quantity, (int, Decimal)) and not isinstance(quantity, bool):
        return Decimal(quantity)
    match = _QUANTITY.fullmatch(quantity) if isinstance(quantity, str) else None
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    number, binary, decimal, exponent = match.groups()
    if binary:
        return Decimal(number) * (Decimal(1024) ** ("KMGTPE".index(binary[0]) + 1))
    if decimal:
        return Decimal(number) * (Decimal(1000) ** _DECIMAL_SI[decimal])
    return Decimal(f"{number}e{exponent}") if exponent else Decimal(number)


def _quantity(raw: str) -> str:
    try:
        value = parse_quantity(raw.strip())
    except ValueError:
        raise ValueError("expected a Kubernetes quantity such as 4, 500m, 8Gi") from None
    if value <= 0:
        raise ValueError("expected a positive Kubernetes quantity")
    return raw.strip()


def _text(raw: str) -> str:
    return raw


# --- defaults -----------------------------------------------------------------

def _default_node_name(_env: Mapping[str, str]) -> str:
    return socket.gethostname().lower()


def _default_kubeconfig(env: Mapping[str, str]) -> str:
    return str(Path(env.get("HOME") or Path.home()) / ".kube" / "config")


def first_non_loopback_ipv4() -> str | None:
    """The first IPv4 address of this host that is not loopback, if any."""
    import psutil

    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def _default_pod_ip(_env: Mapping[str, str]) -> str:
    return first_non_loopback_ipv4() or "127.0.0.1"


def _default_home(env: Mapping[str, str]) -> str:
    return str(Path(env.get("HOME") or Path.home()))


# --- the table ------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One setting: where it comes from, its default, and how it is checked."""

    name: str  # attribute of Settings
    env: str | None
    flags: tuple[str, ...]
    parse: Callable[[str], Any]
    default: Any = None  # a value, or a callable(env) -> raw string
    help: str = ""
    is_flag: bool = False  # a boolean flag that takes no value

    @property
    def label(self) -> str:
        """How errors name the setting: the variable when there is one, else the flag."""
        return self.env or self.flags[0]


SETTINGS: tuple[Setting, ...] = (
    Setting("kubeconfig", "KUBECONFIG", ("--kubeconfig",), _kubeconfig_path, None,
            "kubeconfig of the cluster; in-cluster config is used when unset and ~/.kube/config is missing; "
            "with VK_BOOTSTRAP_KUBECONFIG, where the node's own kubeconfig is written (default: ~/.kube/config)"),
    Setting("bootstrap_kubeconfig", "VK_BOOTSTRAP_KUBECONFIG", ("--bootstrap-kubeconfig",), _kubeconfig, None,
            "kubeconfig with a bootstrap token: when KUBECONFIG does not exist or its client certificate "
            "expired, vkcmd requests a node certificate (CSR) with it and writes KUBECONFIG (default: none)"),
    Setting("serving_cert_bootstrap", "VK_SERVING_CERT_BOOTSTRAP", ("--rotate-server-certificates",), _boolean,
            "false", "request the kubelet API's serving certificate from the cluster (kubelet-serving CSR) "
            "instead of a self-signed one (default: off)", is_flag=True),
    Setting("node_name", "NODENAME", ("--nodename",), _node_name, _default_node_name,
            "node name (default: the host name)"),
    Setting("pod_ip", "VKUBELET_POD_IP", ("--pod-ip",), _ip_address, _default_pod_ip,
            "node InternalIP, reported as every pod's podIP/hostIP (default: first non-loopback IPv4)"),
    Setting("kubelet_port", "KUBELET_PORT", ("--kubelet-port",), _integer(1, 65535), "10250",
            "HTTPS port of the kubelet API (default: 10250)"),
    Setting("tls_cert_file", "APISERVER_CERT_LOCATION", ("--tls-cert-file",), _readable_file, None,
            "TLS certificate served on KUBELET_PORT (default: self-signed, kept in the state dir)"),
    Setting("tls_key_file", "APISERVER_KEY_LOCATION", ("--tls-private-key-file",), _readable_file, None,
            "TLS key for APISERVER_CERT_LOCATION (default: the generated pair's key)"),
    Setting("client_ca_file", "APISERVER_CA_CERT_LOCATION", ("--client-ca-file",), _readable_file, None,
            "CA that signs client certificates accepted by the kubelet API (default: the cluster CA)"),
    Setting("walltime", "JIRIAF_WALLTIME", ("--walltime",), _integer(0), "0",
            "seconds the node may live, 0 = unlimited (default: 0; inside a Slurm job, its time limit)"),
    Setting("node_type", "JIRIAF_NODETYPE", ("--nodetype",), _label_value, "",
            "value of the jiriaf.nodetype label (default: empty)"),
    Setting("site", "JIRIAF_SITE", ("--site",), _label_value, "",
            "value of the jiriaf.site label (default: empty)"),
    Setting("provider", "VK_PROVIDER", ("--provider",), _label_value, "mock",
            "value of the virtual-kubelet.io/provider taint (default: mock)"),
    Setting("verbosity", "VK_LOG_VERBOSITY", ("--klog.v", "-v"), _integer(0, 10), "2",
            "log verbosity, klog style: 0-3 info, 4+ debug, 6+ also client libraries (default: 2)"),
    Setting("log_format", "VK_LOG_FORMAT", ("--log-format",), _choice("logfmt", "json"), "logfmt",
            "log line format on stderr: logfmt or json (default: logfmt)"),
    Setting("workspace_root", "VK_WORKSPACE_ROOT", ("--workspace-root",), _directory, _default_home,
            "root of pod workspaces <root>/<namespace>/<pod>/ (default: $HOME)"),
    Setting("state_dir", "VK_STATE_DIR", ("--state-dir",), _directory, None,
            "where vkcmd keeps its own state (default: <workspace root>/.vkcmd/<node name>)"),
    Setting("cpu", "VK_CPU", ("--cpu",), _quantity, None,
            "cpu capacity to report (default: host CPUs)"),
    Setting("memory", "VK_MEMORY", ("--memory",), _quantity, None,
            "memory capacity to report (default: host memory)"),
    Setting("ephemeral_storage", "VK_EPHEMERAL_STORAGE", ("--ephemeral-storage",), _quantity, None,
            "ephemeral-storage capacity to report (default: size of the filesystem holding the workspace "
            "root; allocatable keeps the kubelet's eviction reserve of a tenth)"),
    Setting("max_pods", "VK_PODS", ("--max-pods",), _integer(1), "1000",
            "pods capacity to report (default: 1000)"),
    Setting("metrics_port", "VK_METRICS_PORT", ("--metrics-port",), _integer(0, 65535), "0",
            "plain-HTTP port for Prometheus /metrics, 0 = off (default: 0)"),
    Setting("authorization_mode", "VK_AUTHORIZATION_MODE", ("--authorization-mode",),
            _choice("Webhook", "AlwaysAllow"), "Webhook",
            "kubelet API authorization: Webhook (SubjectAccessReview) or AlwaysAllow for closed test "
            "setups; authentication is always required (default: Webhook)"),
    Setting("anonymous_metrics", "VK_ANONYMOUS_METRICS", ("--anonymous-metrics",), _boolean, "false",
            "let callers without credentials read /metrics/resource, /metrics and /stats/summary (never logs "
            "or exec), for scrapers that send none; logged loudly at start (default: false)"),
    Setting("drain_margin", "VK_DRAIN_MARGIN", ("--drain-margin",), _seconds, "60",
            "seconds before walltime ends at which draining starts; the largest pod grace period is used "
            "when larger (default: 60)"),
    Setting("lease_renew_interval", "VK_LEASE_RENEW_INTERVAL", ("--lease-renew-interval",),
            _positive_seconds, "10", "seconds between node Lease renewals (default: 10)"),
    Setting("lease_duration", "VK_LEASE_DURATION", ("--lease-duration",), _integer(1), "40",
            "leaseDurationSeconds written on the node Lease (default: 40)"),
    Setting("node_status_interval", "VK_NODE_STATUS_INTERVAL", ("--node-status-interval",),
            _positive_seconds, "300", "longest time between two full node status writes (default: 300)"),
    Setting("alivetime_interval", "VK_ALIVETIME_INTERVAL", ("--alivetime-interval",),
            _positive_seconds, "60", "seconds between updates of the jiriaf.alivetime label (default: 60)"),
    Setting("backoff_initial", "VK_BACKOFF_INITIAL", ("--backoff-initial",), _positive_seconds, "10",
            "first container restart back-off in seconds, doubling per crash (default: 10)"),
    Setting("backoff_max", "VK_BACKOFF_MAX", ("--backoff-max",), _positive_seconds, "300",
            "longest container restart back-off in seconds (default: 300)"),
    Setting("delete_node_on_exit", "VK_DELETE_NODE_ON_EXIT", ("--delete-node-on-exit",), _boolean, "false",
            "delete the Node object when vkcmd exits; needs an identity that may delete nodes, which a node identity may not (default: off)", is_flag=True),
)


@dataclass(frozen=True)
class Settings:
    """Validated settings; field docs are in :data:`SETTINGS` and ``--help``."""

    kubeconfig: str | None
    bootstrap_kubeconfig: str | None
    serving_cert_bootstrap: bool
    node_name: str
    pod_ip: str
    kubelet_port: int
    tls_cert_file: str | None
    tls_key_file: str | None
    client_ca_file: str | None
    walltime: int
    node_type: str
    site: str
    provider: str
    verbosity: int
    log_format: str
    workspace_root: str
    state_dir: str
    cpu: str | None
    memory: str | None
    ephemeral_storage: str | None
    max_pods: int
    metrics_port: int
    authorization_mode: str
    anonymous_metrics: bool
    drain_margin: float
    lease_renew_interval: float
    lease_duration: int
    node_status_interval: float
    alivetime_interval: float
    backoff_initial: float
    backoff_max: float
    delete_node_on_exit: bool
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def in_cluster(self) -> bool:
        """True when no kubeconfig is used (the in-cluster service account is)."""
        return self.kubeconfig is None


def build_parser() -> argparse.ArgumentParser:
    """The command line: every setting as a flag, help naming its variable."""
    parser = argparse.ArgumentParser(
        prog="python -m vkcmd",
        description="Join this machine to a Kubernetes cluster as a node that runs pods as process groups. "
                    "Every setting comes from its environment variable and may be overridden by its flag.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for setting in SETTINGS:
        env = f"[{setting.env}] " if setting.env else ""
        if setting.is_flag:
            parser.add_argument(*setting.flags, dest=setting.name, action="store_const", const="true",
                                default=None, help=env + setting.help)
        else:
            parser.add_argument(*setting.flags, dest=setting.name, default=None, metavar="VALUE",
                                help=env + setting.help)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default ``os.environ``) overridden by ``argv``.

    Raises :class:`ConfigError` for the first bad value; ``SystemExit`` for
    ``--help`` and unknown flags (argparse's own behaviour, exit 2).
    """
    env = dict(os.environ if env is None else env)
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        values[setting.name] = _resolve(setting, getattr(args, setting.name), env)
    walltime_given = args.walltime is not None or bool(env.get("JIRIAF_WALLTIME"))
    return _complete(values, env, walltime_given)


def _resolve(setting: Setting, flag_value: str | None, env: Mapping[str, str]) -> Any:
    if flag_value is not None:
        raw, label = flag_value, setting.flags[0]
    elif setting.env and env.get(setting.env):  # set but empty counts as unset, as kubectl does
        raw, label = env[setting.env], setting.env
    else:
        default = setting.default
        if default is None:
            return None
        raw = default(env) if callable(default) else default
        label = setting.label
    try:
        return setting.parse(raw)
    except ValueError as error:
        raise ConfigError(label, raw, str(error)) from None


def _complete(values: dict[str, Any], env: Mapping[str, str], walltime_given: bool) -> Settings:
    """Cross-setting rules and derived defaults."""
    warnings: list[str] = []
    if not walltime_given:
        from vkcmd.slurm import job_seconds_left

        left = job_seconds_left(env)
        if left is not None:
            values["walltime"] = left
            warnings.append(f"JIRIAF_WALLTIME unset inside Slurm job {env.get('SLURM_JOB_ID') or env.get('SLURM_JOBID')}: "
                            f"walltime taken from the job's end, {left}s")
    if values["bootstrap_kubeconfig"] is not None and values["kubeconfig"] is None:
        raise ConfigError("KUBECONFIG", "", "expected KUBECONFIG with VK_BOOTSTRAP_KUBECONFIG: where to write "
                          "the node's kubeconfig")
    if values["kubeconfig"] is not None and values["bootstrap_kubeconfig"] is None \
            and not Path(values["kubeconfig"]).exists():
        raise ConfigError("KUBECONFIG", values["kubeconfig"], "expected the path of an existing file (or "
                          "VK_BOOTSTRAP_KUBECONFIG to write it)")
    if values["kubeconfig"] is None:
        fallback = _default_kubeconfig(env)
        if Path(fallback).exists():
            try:
                values["kubeconfig"] = _kubeconfig(fallback)
            except ValueError as error:
                raise ConfigError("KUBECONFIG", fallback, str(error)) from None
        elif not env.get("KUBERNETES_SERVICE_HOST"):
            raise ConfigError("KUBECONFIG", "", f"expected a kubeconfig: {fallback} does not exist and "
                              "no in-cluster service account is available (KUBERNETES_SERVICE_HOST unset)")
    if (values["tls_cert_file"] is None) != (values["tls_key_file"] is None):
        missing = "APISERVER_KEY_LOCATION" if values["tls_key_file"] is None else "APISERVER_CERT_LOCATION"
        raise ConfigError(missing, "", "expected APISERVER_CERT_LOCATION and APISERVER_KEY_LOCATION to be set together")
    if values["backoff_max"] < values["backoff_initial"]:
        raise ConfigError("VK_BACKOFF_MAX", values["backoff_max"], "expected a value >= VK_BACKOFF_INITIAL")
    if values["walltime"] % 60 and walltime_given:
        warnings.append(f"JIRIAF_WALLTIME={values['walltime']} is not a multiple of 60 seconds; accepted as is")
    if ipaddress.ip_address(values["pod_ip"]).is_loopback:
        warnings.append(f"VKUBELET_POD_IP={values['pod_ip']} is a loopback address: a real API server refuses "
                        "node-proxy paths to it (logs work, metrics-server cannot scrape)")
    if values["state_dir"] is None:
        values["state_dir"] = str(Path(values["workspace_root"]) / ".vkcmd" / values["node_name"])
    return Settings(**values, warnings=tuple(warnings))
