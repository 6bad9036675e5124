"""Bootstrap over SSH: deliver the controller assets, start the cluster, wait until it is ready.

``run`` is what ``squall apply`` calls once the AWS resources exist; ``kubeconfig_command`` is
``squall kubeconfig``; ``controller_host_key`` is what the node configs install as each
controller's SSH host key.
"""

from squall.assets.hostkeys import HostKey, controller_host_key
from squall.bootstrap.kubeconfig import kubeconfig_command, write_kubeconfig
from squall.bootstrap.runner import Options, run
from squall.bootstrap.ssh import Controller

__all__ = [
    "Controller",
    "HostKey",
    "Options",
    "controller_host_key",
    "kubeconfig_command",
    "run",
    "write_kubeconfig",
]
