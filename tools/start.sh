#!/usr/bin/env bash
# Start one vkcmd node: the seed's test-run/start.sh, adapted to vkcmd.
#
# Every variable below can be set in the environment beforehand; these are only defaults.
# The node runs in the foreground (this script execs it), so SIGTERM or Ctrl-C drains it:
# its pods end with a final status, the node is cordoned, and vkcmd exits 0.
# Its log goes to ./$NODENAME.log (the current directory, as in the seed).
set -euo pipefail

# The JIRIAF image's positional form: start.sh KUBECONFIG NODENAME VKUBELET_POD_IP KUBELET_PORT
# JIRIAF_WALLTIME JIRIAF_NODETYPE JIRIAF_SITE, with client.crt/client.key (the serving pair) in the
# current directory when present. Arguments win over the environment; no arguments: the environment form.
if [ "$#" -ne 0 ]; then
    if [ "$#" -ne 7 ]; then
        echo "usage: $0 [KUBECONFIG NODENAME VKUBELET_POD_IP KUBELET_PORT JIRIAF_WALLTIME JIRIAF_NODETYPE JIRIAF_SITE]" >&2
        echo "  (all seven, as the JIRIAF image's start.sh takes them, or none and the environment)" >&2
        exit 2
    fi
    KUBECONFIG=$1 NODENAME=$2 VKUBELET_POD_IP=$3 KUBELET_PORT=$4
    JIRIAF_WALLTIME=$5 JIRIAF_NODETYPE=$6 JIRIAF_SITE=$7
    if [ -z "${APISERVER_CERT_LOCATION:-}${APISERVER_KEY_LOCATION:-}" ] && [ -f client.crt ] && [ -f client.key ]; then
        APISERVER_CERT_LOCATION="$PWD/client.crt" APISERVER_KEY_LOCATION="$PWD/client.key"
    fi
fi

# Where things are. MAIN: this checkout. VK_PATH: a directory with the kubelet API's serving
# certificate and key (optional). VK_BIN: a directory holding the python that has vkcmd installed
# (the .venv that tools/bootstrap.sh makes); when it has none, python3 from PATH is used.
: "${MAIN:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${VK_PATH:=$MAIN/test-run/apiserver}"
: "${VK_BIN:=$MAIN/.venv/bin}"

# The kubelet API's serving certificate and key (the names are the seed's). When neither is set
# and $VK_PATH holds no client.crt/client.key, vkcmd generates a self-signed pair and keeps it.
if [ -z "${APISERVER_CERT_LOCATION:-}${APISERVER_KEY_LOCATION:-}" ] && [ ! -f "$VK_PATH/client.crt" ]; then
    unset APISERVER_CERT_LOCATION APISERVER_KEY_LOCATION
else
    : "${APISERVER_CERT_LOCATION:=$VK_PATH/client.crt}"
    : "${APISERVER_KEY_LOCATION:=$VK_PATH/client.key}"
    export APISERVER_CERT_LOCATION APISERVER_KEY_LOCATION
fi
: "${KUBECONFIG:=$HOME/.kube/config}"

# The node. VKUBELET_POD_IP is the address the API server and metrics-server dial: by default
# this host's first address (vkcmd picks the first non-loopback IPv4 when this is empty).
: "${NODENAME:=vk}"
: "${VKUBELET_POD_IP:=$(hostname -I 2>/dev/null | awk '{print $1}')}"
: "${KUBELET_PORT:=10250}"

# Labels. JIRIAF_WALLTIME: seconds the node may live, 0 = unlimited; left empty, vkcmd takes the
# time left in the Slurm job it runs in (none outside a job: unlimited).
: "${JIRIAF_WALLTIME=}"
: "${JIRIAF_NODETYPE:=cpu}"
: "${JIRIAF_SITE:=Local}"

export MAIN VK_PATH VK_BIN KUBECONFIG NODENAME KUBELET_PORT JIRIAF_WALLTIME JIRIAF_NODETYPE JIRIAF_SITE
if [ -n "$VKUBELET_POD_IP" ]; then export VKUBELET_POD_IP; else unset VKUBELET_POD_IP; fi

python="python3"
for candidate in "$VK_BIN/python" "$VK_BIN/python3"; do
    if [ -x "$candidate" ]; then python="$candidate"; break; fi
done
if ! "$python" -c 'import vkcmd' 2>/dev/null; then
    export PYTHONPATH="$MAIN${PYTHONPATH:+:$PYTHONPATH}"  # a checkout without an install
fi

echo "starting vkcmd node $NODENAME with $python; log: $PWD/$NODENAME.log" >&2
exec "$python" -m vkcmd --nodename "$NODENAME" --provider mock --klog.v 3 > "./$NODENAME.log" 2>&1
